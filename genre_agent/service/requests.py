"""Request building shared by every entry point: who the user is, what they liked, what to skip.

``recommend``, ``rank``, chat, cold start and the evaluation harness all resolve a request
here, so the liked/not-liked split and the exclusions are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from genre_agent.catalog.items import Item
from genre_agent.config import Config
from genre_agent.errors import GenreError
from genre_agent.storage.interactions import Interaction

HistoryEntry = str | Item | Interaction
# Where a profile passed in the request goes. "both": into retrieval and rerank; "config":
# where profile.use_in_retrieval / use_in_rerank say (chat sessions). A profile the
# Recommender loads itself for ``user_id`` always follows the switches.
ProfileScope = Literal["config", "both"]


@dataclass
class RecRequest:
    """One ``recommend`` (or ``rank``) call's arguments.

    ``history`` entries are item ids, ``Item`` objects (items not in the index), or
    ``Interaction`` rows (whose ratings decide what counts as liked). Without a history,
    ``user_id``'s stored interactions are used.
    """

    user_id: str | None = None
    history: Sequence[HistoryEntry] | None = None
    query: str | None = None
    k: int | None = None
    filters: dict[str, Any] | None = None
    profile: str | None = None
    exclude: Sequence[str] = ()
    profile_scope: ProfileScope = "both"


def is_liked(row: Interaction, min_rating: float) -> bool:
    """Liked = no rating (implicit feedback) or a rating of at least ``min_rating``.

    A rating of 0 is a rating (the lowest), not a missing one.
    """
    return row.rating is None or row.rating >= min_rating


@dataclass
class ResolvedHistory:
    """A request's history, split for its readers."""

    # Every interacted item the catalog knows, oldest first: what the sources see.
    items: tuple[Item, ...] = ()
    # The liked ones among them (most recent ``retrieval.history_len``): what the LLM sees.
    liked: list[Item] = field(default_factory=list)
    disliked: list[Item] = field(default_factory=list)
    # Every interacted id (known to the catalog or not) plus the request's exclusions.
    exclude: frozenset[str] = frozenset()
    unknown: list[str] = field(default_factory=list)


def resolve_history(
    cfg: Config,
    entries: Sequence[HistoryEntry],
    lookup: Any,
    extra_exclude: Sequence[str] = (),
    forgotten: set[str] | frozenset[str] = frozenset(),
) -> ResolvedHistory:
    """Split ``entries`` into what sources and the LLM see. ``lookup(ids) -> {id: Item}``
    fetches catalog items; entries the user asked to forget lose all influence."""
    rows: list[Interaction] = []
    inline: dict[str, Item] = {}
    for e in entries:
        if isinstance(e, Interaction):
            rows.append(e)
        elif isinstance(e, Item):
            inline[e.id] = e
            rows.append(Interaction(user_id="", item_id=e.id))
        else:
            rows.append(Interaction(user_id="", item_id=str(e)))
    all_ids = [r.item_id for r in rows]
    # One entry per item, placed at (and liked or not by) its latest interaction: feedback
    # events keep repeats (three views of one item are three rows).
    latest: dict[str, Interaction] = {}
    for r in rows:
        if r.item_id not in forgotten:
            latest.pop(r.item_id, None)
            latest[r.item_id] = r
    rows = list(latest.values())
    wanted = [r.item_id for r in rows if r.item_id not in inline]
    known: dict[str, Item] = dict(lookup(wanted)) if wanted else {}
    known.update(inline)
    unknown = [r.item_id for r in rows if r.item_id not in known]
    if unknown and not known:
        raise GenreError(f"history items not in the index: {unknown[:10]}")
    items = tuple(known[r.item_id] for r in rows if r.item_id in known)
    r_cfg = cfg.retrieval
    liked = [
        known[r.item_id] for r in rows if r.item_id in known and is_liked(r, r_cfg.min_liked_rating)
    ]
    disliked = [
        known[r.item_id]
        for r in rows
        if r.item_id in known and not is_liked(r, r_cfg.min_liked_rating)
    ]
    liked = liked[-r_cfg.history_len :] if r_cfg.history_len else []
    exclude = set(extra_exclude)
    if r_cfg.exclude_history:
        exclude |= set(all_ids)
    return ResolvedHistory(items, liked, disliked, frozenset(exclude), unknown)


def check_k(k: int | None, default: int) -> int:
    """``k`` is validated exactly like ``ranking.k`` (1..100)."""
    if k is None:
        return default
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
        raise GenreError(f"k must be an integer from 1 to 100 (like ranking.k), got {k!r}")
    return k
