"""The retriever seam: a small Protocol and the query every source answers."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

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
    return candidates(items, [(i, float(s)) for s, i in ranked], source)


class ScoreIndex:
    """Ranks whole-catalog score arrays (one score per id of ``ids``, in that order) with
    numpy: exactly :func:`rank_by_scores` over ``{ids[n]: scores[n]}`` restricted to
    ``items``, without a Python loop over the catalog.

    ``items`` is read once, here: a source holding a ScoreIndex is rebuilt when the catalog
    changes (``Sources.invalidate``).
    """

    def __init__(self, items: Mapping[str, Item], ids: Sequence[str]) -> None:
        self.items = items
        self.ids = list(ids)
        self.pos = {i: n for n, i in enumerate(self.ids)}
        n = len(self.ids)
        # Rank of each id in ascending id order: the tie-break, as an integer.
        self._id_rank = np.empty(n, dtype=np.int64)
        self._id_rank[sorted(range(n), key=self.ids.__getitem__)] = np.arange(n)
        self._in_catalog = np.fromiter((i in items for i in self.ids), dtype=bool, count=n)
        self._allowed: tuple[frozenset[str] | None, np.ndarray | None] = (None, None)

    def _allowed_mask(self, allowed: frozenset[str]) -> np.ndarray:
        """Boolean mask of ``allowed``; the last one is kept (one filter serves a request's
        sources in turn)."""
        last, mask = self._allowed
        if last is not allowed or mask is None:
            mask = np.zeros(len(self.ids), dtype=bool)
            at = [self.pos[i] for i in allowed if i in self.pos]
            mask[at] = True
            self._allowed = (allowed, mask)
        return mask

    def top(
        self, scores: np.ndarray, query: RetrievalQuery, k: int, positive_only: bool = False
    ) -> list[tuple[str, float]]:
        """The top ``k`` (id, score) pairs; rank_by_scores's order and skips."""
        if k <= 0 or not self.ids:
            return []
        scores = np.asarray(scores, dtype=np.float64)
        valid = self._in_catalog.copy()
        skip = [self.pos[i] for i in query.exclude_ids if i in self.pos]
        skip += [self.pos[h.id] for h in query.history if h.id in self.pos]
        valid[skip] = False
        if query.allowed_ids is not None:
            valid &= self._allowed_mask(query.allowed_ids)
        if positive_only:
            valid &= scores > 0
        at = np.flatnonzero(valid)
        vals = scores[at]
        if at.size > k:
            # Every item scoring at least the k-th best score (ties at it included), then the
            # exact order below.
            kth = vals[np.argpartition(-vals, k - 1)[k - 1]]
            keep = vals >= kth
            at, vals = at[keep], vals[keep]
        order = np.lexsort((self._id_rank[at], -vals))[:k]
        return [(self.ids[n], float(vals[o])) for o, n in zip(order, at[order], strict=True)]

    def search(
        self,
        scores: np.ndarray,
        query: RetrievalQuery,
        k: int,
        source: str,
        positive_only: bool = False,
    ) -> list[Candidate]:
        return candidates(self.items, self.top(scores, query, k, positive_only), source)


def candidates(
    items: Mapping[str, Item], ranked: Sequence[tuple[str, float]], source: str
) -> list[Candidate]:
    """Candidates for ranked (id, score) pairs of catalog items. Built without pydantic's
    validation (a hot path: a few hundred per source per request); every field is already
    of its type: an Item from the catalog, a float, a str."""
    return [
        Candidate.model_construct(item=items[i], score=s, source=source, ranks={}, evidence=None)
        for i, s in ranked
    ]
