"""Random source: a seeded shuffle per user, the floor every other source must beat."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from genre_agent.catalog.items import Item
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, rank_by_scores, stable_seed


class RandomRetriever:
    """Scores are a seeded random order, keyed by (seed, user id): the same user always gets
    the same order of the same candidates, and users differ."""

    name = "random"

    def __init__(self, items: Mapping[str, Item], seed: int = 0) -> None:
        self.items = items
        self.seed = seed

    def _order(self, query: RetrievalQuery, ids: Sequence[str]) -> dict[str, float]:
        order = list(ids)
        random.Random(stable_seed(self.seed, query.user_id, "random")).shuffle(order)
        n = len(order)
        return {i: float(n - pos) for pos, i in enumerate(order)}

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        scores = self._order(query, candidate_ids)
        return [scores[i] for i in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        return rank_by_scores(
            self.items, self._order(query, sorted(self.items)), query, k, self.name
        )
