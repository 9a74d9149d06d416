"""Years in a chat message: decades in words and digits, bounds, ranges, relative words.

Bounds follow what people mean: "before 1970" is up to 1969, "since 2000" and "not older
than 2000" from 2000, "after 2005" from 2006; a decade is its ten years ("early"/"mid"/
"late" its first four, middle four and last four years). A negated
decade ("isn't from the 2010s") becomes one bound only at an open end of the catalog's
years; a gap in the middle is left over.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from genre_agent.service import lexicon as lx


def decade_at(words: list[str], i: int) -> tuple[int, int, int] | None:
    """(lo, hi, tokens) of a decade or year expression starting at ``i``."""
    if i >= len(words):
        return None
    w = words[i]
    mod = None
    start = i
    if w in ("early", "mid", "late") and i + 1 < len(words):
        mod = w
        i += 1
        w = words[i]
        if w == "the" and i + 1 < len(words):
            i += 1
            w = words[i]
    lo = None
    span = 1
    m = re.fullmatch(r"(1[89]|20)(\d)0s", w)
    if m:
        lo = int(m.group(1)) * 100 + int(m.group(2)) * 10
    m2 = re.fullmatch(r"(\d)0s", w)
    if lo is None and m2:
        d = int(m2.group(1))
        lo = 2000 + d * 10 if d <= 1 else 1900 + d * 10
    if lo is None and w in lx.WORD_DECADES:
        lo = lx.WORD_DECADES[w]
    if lo is None and w == "nineteen" and i + 1 < len(words) and words[i + 1] in lx.WORD_DECADES:
        lo = lx.WORD_DECADES[words[i + 1]]
        span = 2
    if lo is not None:
        hi = lo + 9
        if mod == "early":
            hi = lo + 3
        elif mod == "mid":
            lo, hi = lo + 3, lo + 6
        elif mod == "late":
            lo = lo + 6
        return lo, hi, i - start + span
    if mod is None and re.fullmatch(r"(19\d\d|20[0-3]\d)", w):
        y = int(w)
        return y, y, 1
    return None


# Cues before a year expression, longest first: (phrase, kind).
_BEFORE_CUES = (
    ("not older than", "min_in"),
    ("no older than", "min_in"),
    ("no earlier than", "min_in"),
    ("not earlier than", "min_in"),
    ("not before", "min_in"),
    ("nothing before", "min_in"),
    ("nothing older than", "min_in"),
    ("nothing earlier than", "min_in"),
    ("not newer than", "max_in"),
    ("no newer than", "max_in"),
    ("no later than", "max_in"),
    ("not later than", "max_in"),
    ("not after", "max_in"),
    ("nothing after", "max_in"),
    ("nothing newer than", "max_in"),
    ("nothing later than", "max_in"),
    ("older than", "max_ex"),
    ("earlier than", "max_ex"),
    ("prior to", "max_ex"),
    ("newer than", "min_ex"),
    ("later than", "min_ex"),
    ("younger than", "min_ex"),
    ("more recent than", "min_ex"),
    ("starting from", "min_in"),
    ("starting in", "min_in"),
    ("up to", "max_in"),
    ("up until", "max_in"),
    ("before", "max_ex"),
    ("pre", "max_ex"),
    ("until", "max_in"),
    ("till", "max_in"),
    ("through", "max_in"),
    ("after", "min_ex"),
    ("post", "min_ex"),
    ("since", "min_in"),
    ("starting", "min_in"),
)

# Cues after a year expression: (phrase, kind).
_AFTER_CUES = (
    ("or later", "min_in"),
    ("and later", "min_in"),
    ("or newer", "min_in"),
    ("and newer", "min_in"),
    ("onwards", "min_in"),
    ("onward", "min_in"),
    ("and up", "min_in"),
    ("or after", "min_in"),
    ("and after", "min_in"),
    ("on", "min_in"),
    ("or earlier", "max_in"),
    ("and earlier", "max_in"),
    ("or older", "max_in"),
    ("and older", "max_in"),
    ("or before", "max_in"),
    ("and before", "max_in"),
    ("+", "min_in"),
    ("and beyond", "min_in"),
)


def read_years(
    words: list[str],
    dash: Sequence[bool],
    used: list[bool],
    last_years: Sequence[int | None],
    max_year: int,
) -> tuple[int | None, int | None]:
    """Year bounds in ``words`` (marking what they use); relative words ("older", "recent")
    are read against ``last_years`` and the catalog's newest year."""
    n = len(words)
    r = _YearReader(words, dash, used, max_year)
    i = 0
    while i < n:
        if used[i]:
            i += 1
            continue
        d = decade_at(words, i)
        if d is None:
            i += 1
            continue
        lo, hi, span = d
        end = i + span
        first = i
        if first and words[first - 1] == "the" and not used[first - 1]:
            first -= 1
        stop = r.range_at(first, end, lo)
        if stop is not None:
            i = stop
            continue
        first = r.made_prefix(first, i)
        placed = r.place(first, end, lo, hi)
        if placed is None:
            i = end
            continue
        kind, end = placed
        r.record(kind, lo, hi)
        i = end
    _relative_years(words, used, last_years, r.mins, r.maxs, max_year)
    if r.bare:
        r.mins.append(min(lo for lo, _ in r.bare))
        r.maxs.append(max(hi for _, hi in r.bare))
    return (max(r.mins) if r.mins else None), (min(r.maxs) if r.maxs else None)


class _YearReader:
    """The steps of :func:`read_years` over one message, collecting its bounds."""

    def __init__(
        self, words: list[str], dash: Sequence[bool], used: list[bool], max_year: int
    ) -> None:
        self.words = words
        self.dash = dash
        self.used = used
        self.max_year = max_year
        self.mins: list[int] = []
        self.maxs: list[int] = []
        self.bare: list[tuple[int, int]] = []

    def back(self, i: int, phrase: str) -> int:
        p = tuple(phrase.split())
        s = i - len(p)
        return s if s >= 0 and tuple(self.words[s:i]) == p and not any(self.used[s:i]) else -1

    def mark(self, a: int, b: int) -> None:
        for x in range(a, b):
            self.used[x] = True

    def range_at(self, first: int, end: int, lo: int) -> int | None:
        """Ranges: between X and Y, from X to Y, X-Y, X to Y; the index after one, or None."""
        words, n = self.words, len(self.words)
        nxt = None
        gap = 0
        if end + 1 <= n - 1 and words[end] in ("and", "to", "through", "till", "until"):
            nxt = decade_at(words, end + 1 + (words[end + 1] == "the"))
            gap = 1 + (words[end + 1] == "the")
        elif end < n and self.dash[end]:
            nxt = decade_at(words, end)
            gap = 0
        if nxt is None:
            return None
        _lo2, hi2, span2 = nxt
        stop = end + gap + span2
        s = self.back(first, "between")
        s = s if s >= 0 else self.back(first, "from")
        self.mark(s if s >= 0 else first, stop)
        self.mins.append(lo)
        self.maxs.append(hi2)
        return stop

    def made_prefix(self, first: int, i: int) -> int:
        """ "nothing made after 1999" reads as "nothing after 1999": marks the "made" words
        and returns the new start."""
        words, used = self.words, self.used
        if first and words[first - 1] in lx.MADE and not used[first - 1]:
            first -= 1
            if first and words[first - 1] in lx.MADE and not used[first - 1]:
                first -= 1
            made_at = first
            while made_at < i and words[made_at] in lx.MADE:
                used[made_at] = True
                made_at += 1
        return first

    def cue_before(self, first: int) -> tuple[int, str] | None:
        for phrase, kind in _BEFORE_CUES:
            s = self.back(first, phrase)
            if s >= 0:
                return s, kind
        return None

    def cue_after(self, first: int, end: int) -> tuple[int, str] | None:
        for phrase, kind in _AFTER_CUES:
            p = tuple(phrase.split())
            if tuple(self.words[end : end + len(p)]) == p:
                if phrase == "on" and self.back(first, "from") < 0:
                    continue
                return end + len(p), kind
        return None

    def place(self, first: int, end: int, lo: int, hi: int) -> tuple[str, int] | None:
        """(kind, end) of the expression at ``first``..``end``, marking its words; None for
        a negated decade in the middle of the catalog's years (left over)."""
        words, used = self.words, self.used
        cue = self.cue_before(first)
        after = self.cue_after(first, end)
        if cue is not None:
            s, kind = cue
            # "nothing (made) after 1999" is "up to 1999"
            t = s - 1
            while t >= 0 and words[t] in lx.MADE and not used[t]:
                t -= 1
            if t >= 0 and words[t] in lx.YEAR_NEG and not used[t]:
                kind, s = lx.FLIP[kind], t
            self.mark(s, end)
        elif after is not None:
            stop, kind = after
            s = self.back(first, "from")
            self.mark(s if s >= 0 else first, stop)
            end = stop
        else:
            kind = "bare"
            s = self.back(first, "from")
            s = s if s >= 0 else self.back(first, "in")
            start = s if s >= 0 else first
            neg = start - 1
            if neg >= 0 and words[neg] in lx.YEAR_NEG and not used[neg]:
                # "isn't from the 2010s": only an open end of the catalog's years can
                # be cut off with one bound; a gap in the middle is left over
                if hi >= self.max_year:
                    kind = "max_ex"
                elif lo <= 1910:
                    kind = "min_ex"
                else:
                    return None
                start = neg
            self.mark(start, end)
        return kind, end

    def record(self, kind: str, lo: int, hi: int) -> None:
        if kind == "min_in":
            self.mins.append(lo)
        elif kind == "min_ex":
            self.mins.append(hi + 1)
        elif kind == "max_in":
            self.maxs.append(hi)
        elif kind == "max_ex":
            self.maxs.append(lo - 1)
        else:
            self.bare.append((lo, hi))


def _relative_years(
    words: list[str],
    used: list[bool],
    last_years: Sequence[int | None],
    mins: list[int],
    maxs: list[int],
    max_year: int,
) -> None:
    n = len(words)
    top = max_year
    seen = [y for y in last_years if y is not None]
    for i, w in enumerate(words):
        if used[i]:
            continue
        # "the last 10 years", "past few years", "last decade"
        if w in ("last", "past") and i + 1 < n:
            j = i + 1
            num = None
            if words[j].isdigit() and j + 1 < n:
                num, j = int(words[j]), j + 1
            elif words[j] in lx.NUM_WORDS and j + 1 < n:
                num, j = lx.NUM_WORDS[words[j]], j + 1
            if words[j] in ("years", "year") and num:
                mins.append(top - num + 1)
                for x in range(i, j + 1):
                    used[x] = True
            elif words[j] == "decade" and num is None:
                mins.append(top - 9)
                for x in range(i, j + 1):
                    used[x] = True
            continue
        if w in ("recent", "recently", "latest", "newest", "modern"):
            if w == "recent" and i and words[i - 1] == "more" and seen:
                mins.append(max(seen) + 1)
                used[i - 1] = True
            else:
                mins.append(top - 4)
            used[i] = True
        elif w in lx.OLDER or (w == "old" and i + 1 < n and words[i + 1] in ("ones", "stuff")):
            if seen:
                maxs.append(min(seen) - 1)
            else:
                maxs.append(1979)
            used[i] = True
        elif w in lx.NEWER:
            if seen:
                mins.append(max(seen) + 1)
            else:
                mins.append(top - 4)
            used[i] = True
        elif w in ("classic", "classics", "old", "oldie", "oldschool"):
            maxs.append(1979)
            used[i] = True
        elif w == "old" and i + 1 < n and words[i + 1] == "school":
            maxs.append(1979)
            used[i] = used[i + 1] = True
