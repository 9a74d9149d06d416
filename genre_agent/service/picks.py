"""Positions of the last reply's picks in a chat message ("not the second", "more like the
first one")."""

from __future__ import annotations

from genre_agent.service import lexicon as lx


def read_positions(words: list[str], used: list[bool], n_last: int) -> tuple[list[int], list[int]]:
    """1-based positions of the last picks the message asks (more, excl) for, marking the
    words it uses."""
    more: list[int] = []
    excl: list[int] = []
    if not n_last:
        return more, excl
    n = len(words)
    bounds = {",", ".", ";", "!", "?", "but", "though", "instead"}
    msg_neg = any(w in lx.PICK_NEG for w in words) or any(
        tuple(words[i : i + 2]) == ("that", "one") and i and words[i - 1] in ("not", "no")
        for i in range(n)
    )
    msg_pos = any(w in lx.PICK_POS for w in words)
    hits = _position_hits(words, used, n_last, bounds)
    for i, pos in hits:
        a = i
        while a > 0 and words[a - 1] not in bounds:
            a -= 1
        b = i
        while b < n - 1 and words[b + 1] not in bounds:
            b += 1
        clause = words[a : b + 1]
        neg = any(w in lx.PICK_NEG for w in clause)
        pos_cue = any(w in lx.PICK_POS for w in clause)
        if neg and not (pos_cue and "more" in clause and "not" not in clause):
            excl.append(pos)
        elif pos_cue:
            more.append(pos)
        elif msg_neg:
            excl.append(pos)
        elif msg_pos:
            more.append(pos)
        else:
            continue  # which way is unclear: leave it over for the LLM
        used[i] = True
        if i + 1 < n and words[i + 1] in lx.PICK_NOUNS:
            used[i + 1] = True
        if words[i] in ("number", "no", "#"):
            used[i + 1] = True
        # "not the first one": the negation belongs to the position
        b = i - 1
        while b >= 0 and words[b] in ("the", "that", "this"):
            b -= 1
        if b >= 0 and words[b] in ("not", "no") and pos in excl:
            used[b] = True
    if hits:
        _mark_pick_cues(words, used)
    return more, excl


def _position_hits(
    words: list[str], used: list[bool], n_last: int, bounds: set[str]
) -> list[tuple[int, int]]:
    """(word index, 1-based position) of each reference to one of the last picks."""
    n = len(words)
    hits: list[tuple[int, int]] = []
    for i, w in enumerate(words):
        if used[i]:
            continue
        pos = None
        if w in lx.ORD and (i + 1 >= n or words[i + 1] in lx.PICK_NOUNS or words[i + 1] in bounds):
            pos = lx.ORD[w]
        elif w == "last" and (
            i + 1 >= n or words[i + 1] in lx.PICK_NOUNS or words[i + 1] in bounds
        ):
            pos = n_last
        elif w in ("number", "no", "#") and i + 1 < n and words[i + 1].isdigit():
            pos = int(words[i + 1])
        if pos is not None and 1 <= pos <= n_last:
            hits.append((i, pos))
    return hits


def _mark_pick_cues(words: list[str], used: list[bool]) -> None:
    """The cue words of a pick reference are accounted for, but "no"/"not" stay free
    for a genre negation in the same message ("drop the second, and no romance")."""
    n = len(words)
    for i, w in enumerate(words):
        if w in (lx.PICK_NEG | lx.PICK_POS) - {"no", "not", "without", "except"}:
            used[i] = True
        elif w == "that" and i + 1 < n and words[i + 1] == "one":
            used[i] = used[i + 1] = True
            if i and words[i - 1] in ("not", "no"):
                used[i - 1] = True
