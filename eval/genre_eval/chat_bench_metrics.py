"""The chat benchmark's metrics: slot precision/recall, pick checks, percentiles
(re-exported by ``genre_eval.chat_bench``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genre_eval.chat_bench_cases import SLOTS, Expect


# --- metrics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1.0 when nothing was claimed (nothing claimed wrongly)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 when there was nothing to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """2PR / (P + R)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def slot_values(wishes: Mapping[str, Any], slot: str) -> set[str]:
    """One slot as a set: lists as their items, a year bound as a one-element set."""
    v = wishes.get(slot)
    if v is None or v == []:
        return set()
    if isinstance(v, list | tuple | set):
        return {str(x) for x in v}
    return {str(v)}


def slot_prf(
    golds: Sequence[Mapping[str, Any]], preds: Sequence[Mapping[str, Any]]
) -> dict[str, PRF]:
    """Micro-averaged counts per slot over turns: a wrong year bound is one FP and one FN."""
    out = {}
    for slot in SLOTS:
        tp = fp = fn = 0
        for g, p in zip(golds, preds, strict=True):
            gs, ps = slot_values(g, slot), slot_values(p, slot)
            tp += len(gs & ps)
            fp += len(ps - gs)
            fn += len(gs - ps)
        out[slot] = PRF(tp, fp, fn)
    return out


def resolve(expect: Expect, last_years: Sequence[int | None]) -> dict[str, Any]:
    """The turn's wishes with "older/newer than last" fixed from the last picks' years."""
    w = expect.model_dump()
    years = [y for y in last_years if y is not None]
    for key in ("year_min", "year_max"):
        v = w[key]
        if v == "older_than_last":
            w[key] = min(years) - 1 if years else None
        elif v == "newer_than_last":
            w[key] = max(years) + 1 if years else None
    return w


def pick_ok(
    genres: Sequence[str],
    year: int | None,
    item_id: str,
    wishes: Mapping[str, Any],
    reference_genres: Sequence[str] = (),
) -> bool:
    """Whether one pick satisfies every hard wish of its turn.

    Hard wishes: every wanted genre present, no unwanted genre, the year within the bounds,
    not a named title, and (when titles were named) at least one genre of a named title that
    the turn does not exclude.
    """
    gs = set(genres)
    if not set(wishes.get("genres_include") or []) <= gs:
        return False
    if set(wishes.get("genres_exclude") or []) & gs:
        return False
    lo, hi = wishes.get("year_min"), wishes.get("year_max")
    if lo is not None and (year is None or year < lo):
        return False
    if hi is not None and (year is None or year > hi):
        return False
    refs = wishes.get("references") or []
    if item_id in refs:
        return False
    wanted_any = set(reference_genres) - set(wishes.get("genres_exclude") or [])
    return not (refs and wanted_any and not wanted_any & gs)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
