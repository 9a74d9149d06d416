"""Item-kNN collaborative filtering (implicit's cosine item-item model), saved with provenance."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, load_npz, save_npz

from genre_agent.catalog.items import Item
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, ScoreIndex


def fit_item_similarity(
    ids: Sequence[str], rows: Iterable[Interaction], neighbours: int = 100
) -> csr_matrix:
    """Cosine item-item similarity over binary user-item interactions, top ``neighbours``
    per item (implicit's CosineRecommender). Rows for items outside ``ids`` are ignored."""
    from implicit.nearest_neighbours import CosineRecommender

    pos = {i: n for n, i in enumerate(ids)}
    rows = [r for r in rows if r.item_id in pos]
    users = sorted({r.user_id for r in rows})
    upos = {u: n for n, u in enumerate(users)}
    mat = csr_matrix(
        (
            np.ones(len(rows), dtype=np.float32),
            ([upos[r.user_id] for r in rows], [pos[r.item_id] for r in rows]),
        ),
        shape=(max(len(users), 1), len(ids)),
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    model = CosineRecommender(K=neighbours)
    with warnings.catch_warnings():
        # implicit transposes internally and warns about its own COO intermediate.
        warnings.simplefilter("ignore")
        model.fit(mat, show_progress=False)
    return model.similarity.tocsr()


class ItemKNNRetriever:
    """score(i) = sum over history items h of cosine(h, i), from ``K`` nearest neighbours each.

    Fit only on training interactions: held-out targets must not leak into the similarity.
    """

    name = "itemknn"

    def __init__(self, items: Mapping[str, Item], ids: Sequence[str], sim: csr_matrix) -> None:
        self.items = items
        self.ids = list(ids)
        self.pos = {i: n for n, i in enumerate(self.ids)}
        self.sim = sim
        self._rank = ScoreIndex(items, self.ids)

    @classmethod
    def fit(
        cls, items: Mapping[str, Item], rows: Iterable[Interaction], neighbours: int = 100
    ) -> ItemKNNRetriever:
        ids = sorted(items)
        return cls(items, ids, fit_item_similarity(ids, rows, neighbours))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_npz(folder / "itemknn.npz", self.sim)
        (folder / "itemknn.ids").write_text("\n".join(self.ids), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, items: Mapping[str, Item]) -> ItemKNNRetriever:
        ids = (folder / "itemknn.ids").read_text(encoding="utf-8").split("\n")
        return cls(items, ids, load_npz(folder / "itemknn.npz").tocsr())

    def pair_similarity(
        self, history_ids: Sequence[str], item_ids: Sequence[str]
    ) -> dict[tuple[str, str], float]:
        """cosine(h, i) for every known (history item, item) pair with a nonzero value."""
        hs = [h for h in history_ids if h in self.pos]
        its = [i for i in item_ids if i in self.pos]
        if not hs or not its:
            return {}
        block = self.sim[[self.pos[h] for h in hs]][:, [self.pos[i] for i in its]].toarray()
        return {
            (h, i): float(block[a, b])
            for a, h in enumerate(hs)
            for b, i in enumerate(its)
            if block[a, b] > 0
        }

    def _all_scores(self, history_ids: Sequence[str]) -> np.ndarray:
        idx = [self.pos[h] for h in history_ids if h in self.pos]
        if not idx:
            return np.zeros(len(self.ids))
        return np.asarray(self.sim[idx].sum(axis=0)).ravel()

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        scores = self._all_scores([h.id for h in query.history])
        return [float(scores[self.pos[c]]) if c in self.pos else 0.0 for c in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        scores = self._all_scores([h.id for h in query.history])
        return self._rank.search(scores, query, k, self.name, positive_only=True)
