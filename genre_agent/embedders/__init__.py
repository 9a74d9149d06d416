"""Embedders, one per ``embedder.kind``: the Protocol and an explicit registry table."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Protocol

from genre_agent.config import EmbedderConfig, EmbedderKind
from genre_agent.errors import ConfigError


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def _sentence_transformers(cfg: EmbedderConfig) -> Embedder:
    from genre_agent.embedders.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(cfg)


def _fake(cfg: EmbedderConfig) -> Embedder:
    from genre_agent.embedders.fake import FakeEmbedder

    return FakeEmbedder(cfg)


EMBEDDERS: dict[EmbedderKind, Callable[[EmbedderConfig], Embedder]] = {
    "sentence-transformers": _sentence_transformers,
    "fake": _fake,
}

_EMBEDDER_CACHE: dict[str, Embedder] = {}


def get_embedder(cfg: EmbedderConfig) -> Embedder:
    key = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    if key not in _EMBEDDER_CACHE:
        if cfg.kind not in EMBEDDERS:
            raise ConfigError(f"embedder.kind: unknown {cfg.kind!r}; known: {sorted(EMBEDDERS)}")
        _EMBEDDER_CACHE[key] = EMBEDDERS[cfg.kind](cfg)
    return _EMBEDDER_CACHE[key]
