"""The retriever seam: a small Protocol and the query every source answers."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from genre_agent.catalog.items import Item
from genre_agent.types import Candidate


@dataclass(frozen=True)
class RetrievalQuery:
    """What a source may use: history, free text, a profile, filters, exclusions.

    ``history`` is every item the user interacted with, oldest first; each source keeps
    what it needs (the text sources the most recent ``history_len``). ``where`` is a Chroma
    metadata filter; ``allowed_ids`` is the set of ids it admits, resolved once per request
    by the store, so sources without Chroma honour the same filter (None: no filter).
    """

    history: tuple[Item, ...] = ()
    text: str | None = None
    profile: str | None = None
    where: dict[str, Any] | None = None
    exclude_ids: frozenset[str] = field(default_factory=frozenset)
    allowed_ids: frozenset[str] | None = None
    user_id: str | None = None


@runtime_checkable
class Retriever(Protocol):
    """A candidate source: searches the catalog, and scores given candidates the same way."""

    name: str

    def search(self, query: RetrievalQuery, k: int) -> list[Candidate]: ...

    def score(self, query: RetrievalQuery, candidate_ids: Sequence[str]) -> list[float]: ...


def stable_seed(seed: int, key: str | None, salt: str = "") -> int:
    """A 64-bit seed from (seed, key, salt), stable across processes."""
    blob = f"{seed}\x00{key}\x00{salt}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def rank_by_scores(
    items: Mapping[str, Item],
    scores: Mapping[str, float],
    query: RetrievalQuery,
    k: int,
    source: str,
    positive_only: bool = False,
) -> list[Candidate]:
    """Top-k by score; ties broken by item id (ascending); history, exclusions and items the
    filter rejects are skipped.

    ``positive_only`` drops items with score <= 0 (no evidence at all), so that fusion does
    not reward an arbitrary id order among them.
    """
    skip = set(query.exclude_ids) | {h.id for h in query.history}
    allowed = query.allowed_ids
    # nsmallest(k) == sorted()[:k], without sorting the whole catalog per request.
    ranked = heapq.nsmallest(
        k,
        (
            (s, i)
            for i, s in scores.items()
            if i not in skip
            and i in items
            and (allowed is None or i in allowed)
            and (s > 0 or not positive_only)
        ),
        key=lambda t: (-t[0], t[1]),
    )
    return [Candidate(item=items[i], score=float(s), source=source) for s, i in ranked]
