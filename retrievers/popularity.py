"""Popularity source: items ordered by how many interactions they have."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from genre_agent.catalog.items import Item
from genre_agent.retrievers.base import RetrievalQuery, rank_by_scores
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate


class PopularityRetriever:
    """Score = number of interactions with the item (the whole interaction store)."""

    name = "popularity"

    def __init__(self, items: Mapping[str, Item], counts: Mapping[str, int]) -> None:
        self.items = items
        self.counts = counts

    @classmethod
    def from_interactions(
        cls, items: Mapping[str, Item], rows: Iterable[Interaction]
    ) -> PopularityRetriever:
        return cls(items, dict(Counter(r.item_id for r in rows)))

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        return [float(self.counts.get(i, 0)) for i in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        scores = {i: float(self.counts.get(i, 0)) for i in self.items}
        return rank_by_scores(self.items, scores, query, k, self.name)
