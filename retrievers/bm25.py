"""BM25 source over item text (bm25s); the query is the user's recent history + request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, ScoreIndex


class BM25Retriever:
    """Okapi BM25 (bm25s defaults: k1=1.5, b=0.75) over ``Item.document()``.

    The query text is the documents of the ``history_len`` most recent history items plus
    the request text (or, without one, the profile).
    """

    name = "bm25"

    def __init__(self, items: Mapping[str, Item], history_len: int = 20) -> None:
        import bm25s

        self._bm25s = bm25s
        self.items = items
        self.ids = sorted(items)
        self.pos = {i: n for n, i in enumerate(self.ids)}
        self.history_len = history_len
        self._rank = ScoreIndex(items, self.ids)
        corpus = [items[i].document() for i in self.ids]
        tokens = bm25s.tokenize(corpus, stopwords="en", return_ids=False, show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(
            bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False
        )
        self._vocab = {t for doc in tokens for t in doc}

    def _query_tokens(self, query: RetrievalQuery) -> list[str]:
        recent = list(query.history)[-self.history_len :] if self.history_len else []
        parts = [h.document() for h in recent]
        text = query.text or query.profile
        if text:
            parts.append(text)
        toks = self._bm25s.tokenize(
            " ".join(parts), stopwords="en", return_ids=False, show_progress=False
        )
        return [t for t in (toks[0] if toks else []) if t in self._vocab]

    def _all_scores(self, query: RetrievalQuery) -> np.ndarray:
        toks = self._query_tokens(query)
        if not toks:
            return np.zeros(len(self.ids))
        return np.asarray(self.model.get_scores(toks), dtype=float)

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        scores = self._all_scores(query)
        return [float(scores[self.pos[c]]) if c in self.pos else 0.0 for c in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        scores = self._all_scores(query)
        return self._rank.search(scores, query, k, self.name, positive_only=True)
