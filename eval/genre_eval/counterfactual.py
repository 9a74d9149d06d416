"""Counterfactual helpers of the explanation metrics: what the runner removes from a history
and how far an item fell (re-exported by ``genre_eval.explain_metrics``)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def rank_drop(before: Sequence[str], after: Sequence[str], item_id: str) -> int:
    """rank_after(i) - rank_before(i) (1-based; positive: the item fell). An item missing from
    ``after`` (cut at k) ranks len(after) + 1."""
    if item_id not in before:
        raise ValueError(f"item {item_id!r} is not in the first ranking")
    new = after.index(item_id) + 1 if item_id in after else len(after) + 1
    return new - (list(before).index(item_id) + 1)


def removals(
    explained: Sequence[tuple[str, Sequence[str]]], history_ids: Sequence[str], seed: str
) -> list[tuple[str, list[str], list[str]]]:
    """For each (item, cites): (item, the cited history items, as many random history items).

    Cites outside the visible history are ignored; an item with no cite left, or whose
    removal would empty the history, is skipped. The random items are drawn uniformly from
    the whole visible history with a generator seeded by ``seed`` (the user id)."""
    visible = list(dict.fromkeys(history_ids))
    known = set(visible)
    rng = random.Random(seed)
    out = []
    for item_id, cites in explained:
        cited = [c for c in dict.fromkeys(cites) if c in known]
        if not cited or len(cited) >= len(visible):
            continue
        out.append((item_id, cited, rng.sample(visible, len(cited))))
    return out
