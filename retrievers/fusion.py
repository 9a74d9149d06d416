"""Hybrid source: weighted reciprocal-rank fusion of several sources."""

from __future__ import annotations

from collections.abc import Sequence

from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery, Retriever


def ranks_of(scores: Sequence[float], ids: Sequence[str]) -> dict[str, int]:
    """1-based ranks by descending score; ties broken by id (ascending)."""
    order = sorted(range(len(ids)), key=lambda n: (-scores[n], ids[n]))
    return {ids[n]: r for r, n in enumerate(order, start=1)}


def rrf(
    rank_lists: Sequence[dict[str, int]], weights: Sequence[float], c: float = 60.0
) -> dict[str, float]:
    """Weighted RRF: ``score(i) = sum_j w_j / (c + rank_j(i))``; unranked items add 0."""
    out: dict[str, float] = {}
    for ranks, w in zip(rank_lists, weights, strict=True):
        for item_id, r in ranks.items():
            out[item_id] = out.get(item_id, 0.0) + w / (c + r)
    return out


class FusionRetriever:
    """Fuses its parts' rankings with weighted RRF.

    ``search``: each part's top ``depth`` items are fused. ``score``: each part ranks the
    given candidates, and those ranks are fused. One source alone keeps its own order.
    """

    name = "fusion"

    def __init__(
        self,
        parts: Sequence[Retriever],
        weights: Sequence[float] | None = None,
        c: float = 60.0,
        depth: int = 200,
    ) -> None:
        if not parts:
            raise ValueError("fusion needs at least one retriever")
        self.parts = list(parts)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.parts)
        if len(self.weights) != len(self.parts):
            raise ValueError("fusion: one weight per retriever")
        self.c = c
        self.depth = depth

    def part_scores(
        self, query: RetrievalQuery, candidate_ids: Sequence[str]
    ) -> dict[str, list[float]]:
        """Each part's raw scores for the candidates (the trace shows them)."""
        return {p.name: p.score(query, candidate_ids) for p in self.parts}

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]:
        return [score for score, _ in self.score_with_ranks(query, candidate_ids)]

    def score_with_ranks(
        self, query: RetrievalQuery, candidate_ids: Sequence[str]
    ) -> list[tuple[float, dict[str, int]]]:
        """Fused score and each part's rank (within the list) of every candidate."""
        per_part = self.part_scores(query, candidate_ids)
        lists = [ranks_of(per_part[p.name], candidate_ids) for p in self.parts]
        fused = rrf(lists, self.weights, self.c)
        return [
            (fused.get(i, 0.0), {p.name: lst[i] for p, lst in zip(self.parts, lists, strict=True)})
            for i in candidate_ids
        ]

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]:
        depth = max(self.depth, k)
        hits = [p.search(query, depth) for p in self.parts]
        lists = [{c.item.id: r for r, c in enumerate(h, start=1)} for h in hits]
        fused = rrf(lists, self.weights, self.c)
        by_id = {c.item.id: c.item for h in hits for c in h}
        order = sorted(fused, key=lambda i: (-fused[i], i))[:k]
        return [
            Candidate(
                item=by_id[i],
                score=fused[i],
                source=self.name,
                ranks={
                    p.name: lst[i] for p, lst in zip(self.parts, lists, strict=True) if i in lst
                },
            )
            for i in order
        ]
