"""Embedding retriever over the Chroma store, with ``where`` metadata filters."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.errors import GenreError
from genre_agent.storage.chroma import ChromaStore
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, candidates


def _normalise(vec: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def _mean(vectors: Sequence[Sequence[float]], weights: Sequence[float]) -> list[float]:
    dim = len(vectors[0])
    acc = [0.0] * dim
    for vec, w in zip(vectors, weights, strict=True):
        for i, v in enumerate(vec):
            acc[i] += w * v
    return _normalise(acc)


class EmbeddingRetriever:
    """Query vector = mean of (recency-weighted history, free-text query, profile) vectors.

    History vectors come from the store itself, so history is never re-embedded, and are
    kept per item after the first read (the catalog changes only through index and delete,
    after which ``Sources.invalidate`` builds a new retriever). Only the ``history_len`` most
    recent history items count. ``items`` (the catalog, when the caller has it loaded)
    spares rebuilding each hit from its stored record.
    """

    name = "embedding"

    def __init__(
        self,
        store: ChromaStore,
        recency_decay: float = 0.9,
        history_len: int = 20,
        items: Mapping[str, Item] | None = None,
    ) -> None:
        self.store = store
        self.items = items
        self.recency_decay = recency_decay
        self.history_len = history_len
        # As the store returns them (float64: 30 MB for 10k items of 384 dimensions).
        self._stored: dict[str, np.ndarray] = {}

    def query_vector(self, query: RetrievalQuery) -> list[float]:
        parts: list[list[float]] = []
        weights: list[float] = []
        history = list(query.history)[-self.history_len :] if self.history_len else []
        if history:
            stored = self.stored_vectors([h.id for h in history])
            missing = [h for h in history if h.id not in stored]
            if missing:
                for h, vec in zip(
                    missing, self.store.embedder.embed([h.document() for h in missing]), strict=True
                ):
                    stored[h.id] = vec
            n = len(history)
            vecs = [stored[h.id] for h in history]
            w = [self.recency_decay ** (n - 1 - i) for i in range(n)]
            parts.append(_mean(vecs, w))
            weights.append(1.0)
        texts = [t for t in (query.text, query.profile) if t]
        if texts:
            for vec in self.store.embedder.embed(texts):
                parts.append(vec)
                # A typed request outweighs the history it refines.
                weights.append(1.5 if query.text else 1.0)
        if not parts:
            raise GenreError("retrieval needs a history, a query text or a profile")
        return _mean(parts, weights)

    def stored_vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """The store's vectors of ``ids`` (those it has), read from it once per item."""
        new = [i for i in dict.fromkeys(ids) if i not in self._stored]
        if new:
            for i, vec in self.store.embeddings(new).items():
                self._stored[i] = np.asarray(vec, dtype=np.float64)
        return {i: self._stored[i].tolist() for i in ids if i in self._stored}

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        """Cosine of each candidate's stored vector with the query vector (-inf: not stored)."""
        q = self.query_vector(query)
        vecs = self.store.embeddings(list(candidate_ids))
        return [
            sum(a * b for a, b in zip(q, vecs[c], strict=True)) if c in vecs else -math.inf
            for c in candidate_ids
        ]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        exclude = set(query.exclude_ids) | {h.id for h in query.history}
        vector = self.query_vector(query)
        hits = self.store.query(vector, k, where=query.where, exclude=exclude, items=self.items)
        found = {item.id: item for item, _ in hits}
        return candidates(found, [(item.id, s) for item, s in hits], self.name)
