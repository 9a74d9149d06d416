"""``ranking.mode = "retrieval"``: the fused retrieval score's order, no LLM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from genre_agent.ranking.base import Needs, RankerContext, RankRequest, top_by_score
from genre_agent.types import RankedItem, Trace


class RetrievalRanker:
    """The top k candidates by retrieval score, ties broken by item id."""

    needs: ClassVar[Needs] = Needs(orders_all=True)
    label: ClassVar[str] = "retrieval"

    @classmethod
    def from_context(cls, ctx: RankerContext) -> RetrievalRanker:
        return cls()

    def rank_many(
        self, requests: Sequence[RankRequest], temperature: float = 0.0, seed: int = 0
    ) -> list[tuple[list[RankedItem], Trace]]:
        return [
            (top_by_score(r.candidates, [c.score for c in r.candidates], r.k), Trace(candidates=[]))
            for r in requests
        ]
