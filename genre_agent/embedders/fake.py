"""A deterministic hashing embedder for unit tests (no model)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from genre_agent.config import EmbedderConfig


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder for unit tests (no model)."""

    name = "fake-hash-64"

    def __init__(self, cfg: EmbedderConfig | None = None, dim: int = 64) -> None:
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            for word in text.lower().split():
                h = int(hashlib.md5(word.strip(".,:;!?()").encode()).hexdigest(), 16)
                vec[h % self.dim] += 1.0
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append([v / norm for v in vec])
        return out
