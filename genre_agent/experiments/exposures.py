"""Exposures (what a user was shown, under which variant) and their join with feedback.

An exposure is one impression: the items of one answer, in order, to one user, under one
variant of one experiment (and, interleaved, the variant that picked each item), when, the
request id and the LLM cost of the answer. A positive feedback event of a user for an item
counts for that user's exposure of the item when it comes within ``window_s`` after it: the
exposure its ``request_id`` names if any, else the latest one before the event. Each event
counts once; an item counts once per impression however often it is clicked.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Exposure:
    experiment: str
    variant: str  # interleave: "" (``teams`` names the variant of each item)
    user_id: str
    request_id: str
    ts: float
    items: tuple[str, ...]
    teams: tuple[str, ...] | None = None
    llm_tokens: int = 0
    llm_seconds: float = 0.0


@dataclass(frozen=True)
class Signal:
    """A feedback event reduced to what the join needs."""

    user_id: str
    item_id: str
    ts: float
    positive: bool
    request_id: str | None = None


@dataclass
class Joined:
    """An exposure and the shown items its user responded to positively."""

    exposure: Exposure
    positives: set[str] = field(default_factory=set)

    def first_positive_rank(self, team: str | None = None) -> int | None:
        """1-based rank of the first positive item (of ``team``'s items, if given)."""
        teams = self.exposure.teams
        for n, item in enumerate(self.exposure.items, start=1):
            if team is not None and (teams is None or teams[n - 1] != team):
                continue
            if item in self.positives:
                return n
        return None


def is_positive(type_: str, rating: float | None, min_liked: float) -> bool:
    """A view, click, like or purchase (no rating), or a rating of at least ``min_liked``
    (what the history calls liked, genre_agent.service.feedback); a dislike is 0.0."""
    return rating is None or rating >= min_liked


def join(exposures: Sequence[Exposure], signals: Iterable[Signal], window_s: float) -> list[Joined]:
    """Each exposure with the positives that count for it (module doc)."""
    joined = [Joined(e) for e in exposures]
    by_request = {j.exposure.request_id: j for j in joined if j.exposure.request_id}
    by_user: dict[str, list[Joined]] = {}
    for j in sorted(joined, key=lambda j: j.exposure.ts):
        by_user.setdefault(j.exposure.user_id, []).append(j)
    times = {u: [j.exposure.ts for j in js] for u, js in by_user.items()}
    for s in signals:
        if not s.positive:
            continue
        named = by_request.get(s.request_id) if s.request_id else None
        if named is not None and named.exposure.user_id == s.user_id:
            if s.item_id in named.exposure.items and _within(named, s, window_s):
                named.positives.add(s.item_id)
            continue
        js = by_user.get(s.user_id, [])
        n = bisect.bisect_right(times.get(s.user_id, []), s.ts)
        for j in reversed(js[:n]):
            if not _within(j, s, window_s):
                break
            if s.item_id in j.exposure.items:
                j.positives.add(s.item_id)
                break
    return joined


def _within(j: Joined, s: Signal, window_s: float) -> bool:
    return j.exposure.ts <= s.ts <= j.exposure.ts + window_s
