"""Deterministic reading of a chat message: genres and moods, negation, years, title references.

The normaliser reads a message against the catalog's own vocabulary (its genres, titles and
year range) and the last reply's picks, and returns a :class:`Reading`: the wishes it found,
and the content words it could not account for (``leftover``). A message with no leftover
is *settled*: the hybrid chat mode then asks no LLM for its intent. Nothing here guesses: a
word that is not in the lexicon is left over, never mapped to the nearest genre.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from genre_agent.catalog.items import Item
from genre_agent.service import lexicon as lx
from genre_agent.service.picks import read_positions
from genre_agent.service.vocabulary import (
    TitleEntry,
    Tok,
    Vocabulary,
    fold,
    title_keys,
    tokenize,
)
from genre_agent.service.years import read_years

# The vocabulary's names stay importable from here (their home before the split).
__all__ = [
    "Normaliser",
    "Reading",
    "TitleEntry",
    "Tok",
    "Vocabulary",
    "fold",
    "title_keys",
    "tokenize",
]


def _phrases(words: Iterable[str]) -> list[tuple[str, ...]]:
    return sorted({tuple(w.split()) for w in words}, key=len, reverse=True)


@dataclass(frozen=True)
class Reading:
    """What the normaliser found in one message (positions are 1-based, of the last picks)."""

    genres_include: tuple[str, ...] = ()
    genres_exclude: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    references: tuple[str, ...] = ()  # catalog item ids named as "like X"
    more_like: tuple[int, ...] = ()
    exclude_picks: tuple[int, ...] = ()
    reset: bool = False
    repeat_ok: bool = False
    query: str = ""
    leftover: tuple[str, ...] = ()

    @property
    def settled(self) -> bool:
        return not self.leftover

    @property
    def empty(self) -> bool:
        return not (
            self.genres_include
            or self.genres_exclude
            or self.year_min
            or self.year_max
            or self.references
            or self.more_like
            or self.exclude_picks
            or self.reset
            or self.repeat_ok
        )


class Normaliser:
    """Reads messages against one catalog's vocabulary (built once, reused per turn)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        known = set(vocab.genres)
        table: dict[tuple[str, ...], tuple[str, ...]] = {}
        for g, words in lx.GENRE_WORDS.items():
            if g in known:
                for w in words:
                    table[tuple(w.split())] = (g,)
        for g in known:  # the catalog's own genre names always count
            table.setdefault(tuple(re.findall(r"[a-z0-9]+", fold(g))), (g,))
        for w, gs in lx.MULTI.items():
            if all(g in known for g in gs):
                table[tuple(w.split())] = gs
        self.genre_table = table
        self.genre_phrases = sorted(table, key=len, reverse=True)
        self.violent = tuple(g for g in lx.VIOLENT_GENRES if g in known)
        self.neg = _phrases(lx.NEG)
        self.cues = _phrases(lx.TITLE_CUES)
        self._years_by_id = {
            e.id: e.year for entries in vocab.titles.values() for e in entries if e.year
        }

    @classmethod
    def from_items(
        cls,
        items: Iterable[Item],
        genres: Sequence[str],
        popularity: Mapping[str, int] | None = None,
    ) -> Normaliser:
        return cls(Vocabulary.from_items(items, genres, popularity))

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _at(words: list[str], i: int, phrase: tuple[str, ...]) -> bool:
        return tuple(words[i : i + len(phrase)]) == phrase

    def _match(self, words: list[str], i: int, phrases: list[tuple[str, ...]]) -> int:
        for p in phrases:
            if self._at(words, i, p):
                return len(p)
        return 0

    def read(self, message: str, last_years: Sequence[int | None] = ()) -> Reading:
        """The wishes in ``message``; ``last_years`` are the last reply's picks' years."""
        toks = tokenize(message)
        words = [t.text for t in toks]
        n = len(words)
        used = [False] * n
        n_last = len(last_years)

        reset = any(self._at(words, i, p) for i in range(n) for p in _phrases(lx.RESET))
        repeat_ok = any(self._at(words, i, p) for i in range(n) for p in _phrases(lx.REPEAT))
        for phrases in (_phrases(lx.RESET), _phrases(lx.REPEAT)):
            for i in range(n):
                k = self._match(words, i, phrases)
                for j in range(i, i + k):
                    used[j] = True

        refs = self._titles(toks, words, used)
        anchor: Sequence[int | None] = last_years
        if refs:
            # "like The Matrix but older": older than the title named in this message
            anchor = [self._year_of(r) for r in refs]
        ymin, ymax = read_years(words, [t.dash for t in toks], used, anchor, self.vocab.max_year)
        more, excl = self._positions(words, used, n_last)
        inc, exc, positive = self._genres(words, used)

        leftover = tuple(
            w
            for w, u in zip(words, used, strict=True)
            if not u
            and w not in lx.STOP
            and not re.fullmatch(r"[,.;:!?/+]", w)
            and not re.fullmatch(r"\d{1,2}", w)  # "kids (6 and 9)": ages, counts
        )
        query_words = [
            toks[i].text
            for i in range(n)
            if (not used[i] and words[i] not in lx.STOP and words[i].isalnum()) or i in positive
        ]
        # A genre both wanted and unwanted in one message ("scary but no gore") is a
        # contradiction the lexicon cannot settle: neither is kept, and it is left over.
        both = set(inc) & set(exc)
        if both:
            leftover = (*leftover, *sorted(g.lower() for g in both))
        inc_t = tuple(g for g in dict.fromkeys(inc) if g not in both)
        exc_t = tuple(g for g in dict.fromkeys(exc) if g not in both)
        return Reading(
            genres_include=inc_t,
            genres_exclude=exc_t,
            year_min=ymin,
            year_max=ymax,
            references=tuple(dict.fromkeys(refs)),
            more_like=tuple(dict.fromkeys(more)),
            exclude_picks=tuple(dict.fromkeys(excl)),
            reset=reset,
            repeat_ok=repeat_ok,
            query=" ".join(query_words),
            leftover=leftover,
        )

    def _year_of(self, item_id: str) -> int | None:
        return self._years_by_id.get(item_id)

    # -- titles -------------------------------------------------------------------------------
    def _titles(self, toks: list[Tok], words: list[str], used: list[bool]) -> list[str]:
        refs: list[str] = []
        n = len(words)
        i = 0
        while i < n:
            k = self._match(words, i, self.cues)
            if not k or used[i]:
                i += 1
                continue
            if (
                words[i] in ("like", "likes", "love")
                and k == 1
                and i
                and words[i - 1] in lx.VERB_LIKE
            ):
                # "I'd like a comedy", "we like it scary": a verb, not a comparison
                if not (i + 1 < n and toks[i + 1].upper):
                    i += 1
                    continue
            j = i + k
            found_any = False
            while j < n:
                hit = self._title_at(toks, words, j)
                if hit is None:
                    break
                entry, span = hit
                refs.append(entry.id)
                found_any = True
                for x in [*range(i, i + k), *range(j, j + span)]:
                    used[x] = True
                j += span
                # "like Heat and Ronin", "like Alien, Aliens or Predator"
                if j + 1 < n and words[j] in {"and", "or", ",", "&"}:
                    if self._title_at(toks, words, j + 1) is not None:
                        used[j] = True
                        j += 1
                        continue
                break
            i = j if found_any else i + 1
        self._titles_uncued(toks, words, used, refs)
        return refs

    def _titles_uncued(
        self, toks: list[Tok], words: list[str], used: list[bool], refs: list[str]
    ) -> None:
        """Without a cue, a title counts only when written as one: two or more capitalised
        words ("Groundhog Day vibes"), or one followed by "-style"/"vibes"/"type"."""
        n = len(words)
        i = 0
        while i < n:
            if used[i] or not toks[i].upper:
                i += 1
                continue
            hit = self._title_at(toks, words, i)
            if hit is None:
                i += 1
                continue
            entry, span = hit
            caps = [toks[x].upper for x in range(i, i + span) if words[x] not in lx.LOWER_OK]
            post = i + span < n and words[i + span] in lx.POST_CUES
            if (span >= 2 and all(caps)) or post:
                refs.append(entry.id)
                for x in range(i, i + span + (1 if post else 0)):
                    used[x] = True
                i += span
                continue
            i += 1

    def _title_at(self, toks: list[Tok], words: list[str], j: int) -> tuple[TitleEntry, int] | None:
        n = len(words)
        for span in range(min(self.vocab.max_title_len + 2, n - j), 0, -1):
            # a colon inside a title ("Star Trek: First Contact") is not part of its key
            key = tuple(w for w in words[j : j + span] if w != ":")
            if not key or words[j + span - 1] == ":":
                continue
            entries = self.vocab.titles.get(key)
            if not entries:
                continue
            if any(w in {",", ".", ";", "!", "?", ":"} for w in key):
                continue
            upper = toks[j].upper
            common = all(w in lx.STOP or w in lx.BRIDGE or (w,) in self.genre_table for w in key)
            if common and not upper:
                continue
            if len(key) == 1 and key[0].isdigit() and not upper:
                # "like 2012" could be a year; only a quoted or capitalised... digits have no
                # case, so a lone number is a title only when a year in parentheses follows
                if not (j + span + 2 < n and words[j + span + 1].isdigit()):
                    continue
            year = None
            # "Alien (1979)" or "Alien from 1979": pick that release
            if j + span < n and words[j + span].isdigit() and len(words[j + span]) == 4:
                year = int(words[j + span])
            pick = entries[0]
            if year is not None:
                same = [e for e in entries if e.year == year]
                if same:
                    pick = same[0]
                    span += 1
            return pick, span
        return None

    # -- years --------------------------------------------------------------------------------
    # -- positions of the last picks ----------------------------------------------------------
    def _positions(
        self, words: list[str], used: list[bool], n_last: int
    ) -> tuple[list[int], list[int]]:
        return read_positions(words, used, n_last)

    # -- genres and negation ------------------------------------------------------------------
    def _genres(self, words: list[str], used: list[bool]) -> tuple[list[str], list[str], set[int]]:
        mentions = self._mentions(words, used)
        inc: list[str] = []
        exc: list[str] = []
        neg_at: dict[int, bool] = {}
        positive: set[int] = set()
        for start, length, genres, kind in mentions:
            negated, neg_start = self._negation_before(words, used, start, mentions, neg_at)
            if kind == "anti":
                negated = not negated
            for x in range(start, start + length):
                used[x] = True
                neg_at[x] = negated
            if negated:
                if neg_start is not None:
                    for x in range(neg_start, start):
                        used[x] = True
                exc.extend(genres)
            else:
                chosen = genres if kind != "violent" else genres[:1]
                inc.extend(chosen)
                positive.update(range(start, start + length))
        return inc, exc, positive

    def _mentions(
        self, words: list[str], used: list[bool]
    ) -> list[tuple[int, int, tuple[str, ...], str]]:
        """Genre mentions as (start, length, genres, kind), kind "genre", "anti" or "violent"."""
        n = len(words)
        mentions: list[tuple[int, int, tuple[str, ...], str]] = []  # start, len, genres, kind
        i = 0
        while i < n:
            if used[i]:
                i += 1
                continue
            k = 0
            for p in self.genre_phrases:
                if self._at(words, i, p) and not any(used[i : i + len(p)]):
                    mentions.append((i, len(p), self.genre_table[p], "genre"))
                    k = len(p)
                    break
            if not k:
                for w in lx.ANTI:
                    p = tuple(w.split())
                    if self._at(words, i, p):
                        mentions.append((i, len(p), lx.ANTI[w], "anti"))
                        k = len(p)
                        break
            if (
                not k
                and words[i].isdigit()
                and tuple(words[i + 1 : i + 3])
                in {("year", "old"), ("years", "old"), ("yr", "old")}
            ):
                # "for my 8 year old": a child
                mentions.append(
                    (i, 3, ("Children",) if "Children" in self.vocab.genres else (), "genre")
                )
                k = 3
            if not k and words[i] in lx.VIOLENT:
                mentions.append((i, 1, self.violent, "violent"))
                k = 1
            i += k or 1
        return mentions

    def _negation_before(
        self,
        words: list[str],
        used: list[bool],
        start: int,
        mentions: list[tuple[int, int, tuple[str, ...], str]],
        neg_at: dict[int, bool],
    ) -> tuple[bool, int | None]:
        """Whether the mention at ``start`` is negated, and where its negation starts."""
        negated = False
        neg_start = None
        j = start - 1
        while j >= 0:
            w = words[j]
            hit = next(
                (
                    len(p)
                    for p in self.neg
                    if j - len(p) + 1 >= 0 and tuple(words[j - len(p) + 1 : j + 1]) == p
                ),
                0,
            )
            if hit and not used[j]:
                negated = True
                neg_start = j - hit + 1
                break
            if j in neg_at:
                negated = neg_at[j]
                break
            if w == "," and any(x in lx.OPENERS for x in words[j + 1 : start]):
                # "no horror please, something with comedy": a new wish after the comma
                break
            if w in lx.BRIDGE or w in lx.CHAIN:
                if w in lx.CHAIN and not any(s <= j - 1 < s + ln for s, ln, _, _ in mentions):
                    # "and" chains negation only from one genre mention to the next
                    if not (j - 1 >= 0 and words[j - 1] in lx.BRIDGE):
                        break
                j -= 1
                continue
            break
        return negated, neg_start
