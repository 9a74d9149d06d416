"""Stage 2, retrieve: a resolved request's candidates, from the configured fusion (or, for
a cold request answered by popularity, the popularity source alone), or the caller's own
candidates scored by that fusion (``rank``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from genre_agent.catalog.items import Item
from genre_agent.errors import GenreError
from genre_agent.service.sources import Sources
from genre_agent.service.stages.resolve import Resolved
from genre_agent.types import Candidate
from retrievers.base import RetrievalQuery
from retrievers.fusion import FusionRetriever

# Gathers one request's candidates from its query and the fusion to use.
Gather = Callable[[RetrievalQuery, FusionRetriever], list[Candidate]]


def search(n: int) -> Gather:
    """The fusion's top ``n`` for the query."""
    return lambda query, fusion: fusion.search(query, n)


def given(sources: Sources, cands: Sequence[str | Item]) -> Gather:
    """The caller's candidates (ids or items), each with the fusion's score and ranks, in
    the order given; those the request's filter rejects are dropped."""

    def score(query: RetrievalQuery, fusion: FusionRetriever) -> list[Candidate]:
        items = candidate_items(sources, cands)
        allowed = query.allowed_ids
        kept = [it for it in items if allowed is None or it.id in allowed]
        ranked = fusion.score_with_ranks(query, [it.id for it in kept]) if kept else []
        return [
            Candidate(item=it, score=s, source=fusion.name, ranks=ranks)
            for it, (s, ranks) in zip(kept, ranked, strict=True)
        ]

    return score


def candidate_items(sources: Sources, cands: Sequence[str | Item]) -> list[Item]:
    """The caller's candidates as items: unknown ids and repeated ids are errors."""
    ids = [c for c in cands if isinstance(c, str)]
    known = sources.lookup(ids) if ids else {}
    missing = [i for i in ids if i not in known]
    if missing:
        raise GenreError(f"candidates not in the index: {missing[:10]}")
    out = [c if isinstance(c, Item) else known[c] for c in cands]
    seen = [it.id for it in out]
    if len(set(seen)) != len(seen):
        raise GenreError("candidate ids are not distinct")
    return out


def retrieve(sources: Sources, job: Resolved, gather: Gather) -> Resolved:
    """``job`` with its candidates and signals; its time counts as the retrieve stage."""
    t0 = time.perf_counter()
    if job.strategy == "popular":
        fusion, signals = sources.popular(), {"popularity": 1.0}
    else:
        fusion, signals = sources.fused(job.notes)
    job.candidates = gather(job.query, fusion)
    job.signals = signals
    job.seconds += time.perf_counter() - t0
    return job
