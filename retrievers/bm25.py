"""BM25 retriever over item text (bm25s); the query is the user's recent history + request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.retrievers.base import RetrievalQuery, register_retriever
from genre_agent.retrievers.popularity import rank_by_scores
from genre_agent.types import Candidate


@register_retriever("bm25")
class BM25Retriever:
    """Okapi BM25 (bm25s defaults: k1=1.5, b=0.75) over ``Item.document()``."""

    name = "bm25"

    def __init__(self, items: dict[str, Item], history_len: int = 20) -> None:
        import bm25s

        self._bm25s = bm25s
        self.items = items
        self.ids = sorted(items)
        self.pos = {i: n for n, i in enumerate(self.ids)}
        self.history_len = history_len
        corpus = [items[i].document() for i in self.ids]
        tokens = bm25s.tokenize(corpus, stopwords="en", return_ids=False, show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(
            bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False
        )
        self._vocab = {t for doc in tokens for t in doc}

    def _query_text(self, history: Sequence[Item], text: str | None) -> list[str]:
        parts = [h.document() for h in list(history)[-self.history_len :]]
        if text:
            parts.append(text)
        toks = self._bm25s.tokenize(
            " ".join(parts), stopwords="en", return_ids=False, show_progress=False
        )
        return [t for t in (toks[0] if toks else []) if t in self._vocab]

    def _all_scores(self, history: Sequence[Item], text: str | None) -> np.ndarray:
        toks = self._query_text(history, text)
        if not toks:
            return np.zeros(len(self.ids))
        return np.asarray(self.model.get_scores(toks), dtype=float)

    def score(
        self,
        history_ids: Sequence[str],
        candidate_ids: Sequence[str],
        *,
        history_items: Mapping[str, Item] | None = None,
    ) -> list[float]:
        """BM25 of each candidate's document against the history's; ``history_items``
        (default: the indexed items) supplies the history's texts."""
        source = self.items if history_items is None else history_items
        hist = [source[h] for h in history_ids if h in source]
        scores = self._all_scores(hist, None)
        return [float(scores[self.pos[c]]) if c in self.pos else 0.0 for c in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        scores = self._all_scores(query.history, query.text or query.profile)
        return rank_by_scores(
            self.items,
            {i: float(scores[n]) for n, i in enumerate(self.ids)},
            query,
            k,
            self.name,
            True,
        )
