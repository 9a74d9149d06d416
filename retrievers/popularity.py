"""Popularity retriever: items ordered by how many training interactions they have."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from genre_agent.catalog.items import Item
from genre_agent.retrievers.base import RetrievalQuery, register_retriever
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate


def rank_by_scores(
    items: dict[str, Item],
    scores: dict[str, float],
    query: RetrievalQuery,
    k: int,
    source: str,
    positive_only: bool = False,
) -> list[Candidate]:
    """Top-k by score; ties broken by item id (ascending), history and exclusions skipped.

    ``positive_only`` drops items with score <= 0 (no evidence at all), so that fusion does
    not reward an arbitrary id order among them.
    """
    skip = set(query.exclude_ids) | {h.id for h in query.history}
    ranked = sorted(
        (
            (s, i)
            for i, s in scores.items()
            if i not in skip and i in items and (s > 0 or not positive_only)
        ),
        key=lambda t: (-t[0], t[1]),
    )
    return [Candidate(item=items[i], score=float(s), source=source) for s, i in ranked[:k]]


@register_retriever("popularity")
class PopularityRetriever:
    """Score = number of interactions with the item in the training data."""

    name = "popularity"

    def __init__(self, items: dict[str, Item], counts: dict[str, int]) -> None:
        self.items = items
        self.counts = counts

    @classmethod
    def from_interactions(
        cls, items: dict[str, Item], rows: Iterable[Interaction]
    ) -> PopularityRetriever:
        return cls(items, dict(Counter(r.item_id for r in rows)))

    def score(self, history_ids: Sequence[str], candidate_ids: Sequence[str]) -> list[float]:
        return [float(self.counts.get(i, 0)) for i in candidate_ids]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        scores = {i: float(self.counts.get(i, 0)) for i in self.items}
        return rank_by_scores(self.items, scores, query, k, self.name)
