"""Popularity source: items ordered by how many interactions they have."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property

from genre_agent.catalog.items import Item
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, candidates


class PopularityRetriever:
    """Score = number of interactions with the item (the whole interaction store)."""

    name = "popularity"

    def __init__(self, items: Mapping[str, Item], counts: Mapping[str, int]) -> None:
        self.items = items
        self.counts = counts

    @cached_property
    def _order(self) -> list[tuple[float, str]]:
        """The catalog by (count descending, id ascending): a search walks it from the top.
        Sorted on the first search only (``score``, for rank, never needs it)."""
        return sorted((-float(self.counts.get(i, 0)), i) for i in self.items)

    @classmethod
    def from_interactions(
        cls, items: Mapping[str, Item], rows: Iterable[Interaction]
    ) -> PopularityRetriever:
        return cls(items, dict(Counter(r.item_id for r in rows)))

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        return [float(self.counts.get(i, 0)) for i in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        skip = query.exclude_ids | {h.id for h in query.history}
        allowed = query.allowed_ids
        top: list[tuple[str, float]] = []
        for neg, i in self._order:
            if len(top) >= k:
                break
            if i not in skip and (allowed is None or i in allowed):
                top.append((i, -neg))
        return candidates(self.items, top, self.name)
