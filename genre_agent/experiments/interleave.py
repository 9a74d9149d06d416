"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008).

Two rankings are merged into one list as two captains pick teams: the team with fewer
picks so far (a coin flip when even) adds its highest-ranked item not yet in the list.
Each shown item remembers its team; a click credits that team. Per impression the team
with more credited clicks wins; equal credit (no clicks included) is a tie.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["a", "b", "tie"]


@dataclass(frozen=True)
class Interleaved:
    """The merged list and, per position, the team ("a" or "b") that picked it."""

    items: list[str]
    teams: list[str]


def impression_seed(*parts: str) -> int:
    """A 64-bit seed from strings (experiment, user, request id): the coin flips of one
    impression replay the same way in any process."""
    blob = "\x00".join(parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def team_draft(a: Sequence[str], b: Sequence[str], k: int, rng: random.Random) -> Interleaved:
    """Merge rankings ``a`` and ``b`` into at most ``k`` distinct items (fewer when the two
    together hold fewer). When one ranking runs out, the other keeps picking."""
    items: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    picks = {"a": 0, "b": 0}
    lists = {"a": list(a), "b": list(b)}
    pos = {"a": 0, "b": 0}

    def next_of(team: str) -> str | None:
        seq = lists[team]
        while pos[team] < len(seq) and seq[pos[team]] in shown:
            pos[team] += 1
        return seq[pos[team]] if pos[team] < len(seq) else None

    while len(items) < k:
        heads = {t: next_of(t) for t in ("a", "b")}
        if heads["a"] is None and heads["b"] is None:
            break
        if picks["a"] != picks["b"]:
            team = "a" if picks["a"] < picks["b"] else "b"
        else:
            team = "a" if rng.random() < 0.5 else "b"
        if heads[team] is None:
            team = "b" if team == "a" else "a"
        item = heads[team]
        assert item is not None
        items.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return Interleaved(items, teams)


def credit(teams: Sequence[str], items: Sequence[str], clicked: Collection[str]) -> dict[str, int]:
    """Clicks credited to each team: every clicked shown item counts for its team."""
    out = {"a": 0, "b": 0}
    for item, team in zip(items, teams, strict=True):
        if item in clicked:
            out[team] += 1
    return out


def outcome(credits: dict[str, int]) -> Outcome:
    """ "a" or "b" when that team got more credited clicks, else "tie"."""
    if credits["a"] > credits["b"]:
        return "a"
    if credits["b"] > credits["a"]:
        return "b"
    return "tie"
