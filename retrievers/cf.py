"""Item-kNN collaborative filtering (implicit's cosine item-item model)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from genre_agent.catalog.items import Item
from genre_agent.retrievers.base import RetrievalQuery, register_retriever
from genre_agent.retrievers.popularity import rank_by_scores
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate


@register_retriever("itemknn")
class ItemKNNRetriever:
    """score(i) = sum over history items h of cosine(h, i), from ``K`` nearest neighbours each.

    Fit only on training interactions: held-out targets must not leak into the similarity.
    """

    name = "itemknn"

    def __init__(
        self, items: dict[str, Item], rows: Iterable[Interaction], neighbours: int = 100
    ) -> None:
        from implicit.nearest_neighbours import CosineRecommender
        from scipy.sparse import csr_matrix

        self.items = items
        self.ids = sorted(items)
        self.pos = {i: n for n, i in enumerate(self.ids)}
        rows = [r for r in rows if r.item_id in self.pos]
        users = sorted({r.user_id for r in rows})
        upos = {u: n for n, u in enumerate(users)}
        mat = csr_matrix(
            (
                np.ones(len(rows), dtype=np.float32),
                ([upos[r.user_id] for r in rows], [self.pos[r.item_id] for r in rows]),
            ),
            shape=(max(len(users), 1), len(self.ids)),
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        self.model = CosineRecommender(K=neighbours)
        with warnings.catch_warnings():
            # implicit transposes internally and warns about its own COO intermediate.
            warnings.simplefilter("ignore")
            self.model.fit(mat, show_progress=False)
        self.sim = self.model.similarity.tocsr()

    def _all_scores(self, history_ids: Sequence[str]) -> np.ndarray:
        idx = [self.pos[h] for h in history_ids if h in self.pos]
        if not idx:
            return np.zeros(len(self.ids))
        return np.asarray(self.sim[idx].sum(axis=0)).ravel()

    def score(self, history_ids: Sequence[str], candidate_ids: Sequence[str]) -> list[float]:
        scores = self._all_scores(history_ids)
        return [float(scores[self.pos[c]]) if c in self.pos else 0.0 for c in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        scores = self._all_scores([h.id for h in query.history])
        return rank_by_scores(
            self.items,
            {i: float(scores[n]) for n, i in enumerate(self.ids)},
            query,
            k,
            self.name,
            True,
        )
