"""The "linked" rationale format: the service chooses the facts, the sentence must carry them.

The facts are chosen without the model (:func:`choose_links`), from the evidence that
``service.evidence`` computed, most telling first: two liked items that point the same way
(and what they share), a shared tag, a shared genre that is not broad, "people who liked
<title>" when item-kNN found that liked item and nothing better links it, a request word;
the item's own genre and year only without liked history, or when nothing better exists.

The answer is ``{"cites": [...], "rationale": "..."}`` (``extra="forbid"``): ``cites`` is
an enum of exactly the chosen liked items' ids, and the ``rationale`` string has a
``pattern`` (:func:`sentence_pattern`) that requires every chosen fact phrase verbatim, in
any order, with the model's own words from a plain alphabet before, between and after them
(bounded lengths), starting with a capital and ending with one period. The free alphabet
is words of letters, digits and hyphens, single spaces and commas: one sentence, no
number fragment at the end, no markup, placeholder, link, price or JSON. The wording
stays the model's; the claim check, the cut check and the retries of
``ranking.rationales`` still read every sentence.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import permutations
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from genre_agent.catalog.items import Item
from genre_agent.ranking.grounding import (
    BROAD_GENRES,
    article,
    display_title,
    is_weak,
    safe_title,
    telling,
)
from genre_agent.types import Evidence, Support

# One free word: letters, digits and hyphens, "'s" at its end. No period (one sentence), no
# quote, semicolon or bracket (a 0.5B model used them to quote titles and to copy the
# phrase list). Words are joined by single spaces, a comma may follow one.
# A number stands alone and has at most four digits (a year): the 0.5B model once ran a
# digit string to the token cap ("people15455555555555").
WORD = r"(?:[A-Za-z-]{1,20}(?:'s)?|[0-9]{1,4})"
LAST = r"[A-Za-z-]{1,20}(?:'s)?"  # the last free word: never a number fragment
MAX_LINKS = 3
# How a sentence names a genre (each is a category word of grounding.CATEGORY_WORDS).
_GENRE_WORD = {"Children": "family", "Sci-Fi": "sci-fi", "Film-Noir": "noir"}
_SKIP_GENRES = {"IMAX", "(no genres listed)"}
_YEAR_SUFFIX = re.compile(r"\s*\(\d{4}(?:[-\u2013]\d{0,4})?\)\s*$")


@dataclass(frozen=True)
class Link:
    """One chosen fact: its kind ("liked", "co-liked", "tag", "genre", "request", "year",
    "decade") and the phrase the sentence must contain word for word."""

    kind: str
    phrase: str


def genre_word(genre: str) -> str:
    return _GENRE_WORD.get(genre, genre.lower())


def _plain(text: str) -> bool:
    return bool(text) and all(" " <= ch <= "~" and ch not in '"\\' for ch in text)


def title_phrase(title: str) -> str:
    """How a sentence names a liked item: its safe title, article in front, no "(year)";
    "" when the safe title is not plain ASCII (it is then not quoted)."""
    phrase = _YEAR_SUFFIX.sub("", display_title(safe_title(title))).strip()
    return phrase if _plain(phrase) else ""


def _attr_link(attribute: str) -> Link:
    if attribute.startswith("tag "):
        return Link("tag", attribute[4:])
    if attribute.startswith("genre "):
        return Link("genre", genre_word(attribute[6:]))
    return Link("decade", attribute)


def _by_telling(shared: Sequence[str]) -> list[str]:
    """Tags, specific genres, broad genres (no decade, no genre a sentence cannot name)."""
    usable = [
        a
        for a in shared
        if not a[:1].isdigit() and a[6:] not in _SKIP_GENRES and _plain(_attr_link(a).phrase)
    ]
    return sorted(usable, key=lambda a: (-telling([a]), a))


def _own_genres(item: Item) -> list[str]:
    """The item's genres a sentence can name, specific before broad."""
    genres = [g for g in str(item.metadata.get("genres", "")).split("|") if g]
    return sorted((g for g in genres if g not in _SKIP_GENRES), key=lambda g: g in BROAD_GENRES)


def _own_links(item: Item) -> list[Link]:
    """The item's own genres (specific first) and year: for requests without history."""
    links = [Link("genre", genre_word(g)) for g in _own_genres(item)]
    year = item.metadata.get("year")
    if isinstance(year, int) and not isinstance(year, bool):
        links.insert(min(1, len(links)), Link("year", str(year)))
    return links


def _support_links(history: Sequence[Support]) -> tuple[list[Link], list[str]]:
    if len(history) >= 2:
        a, b = history[:2]
        links = [Link("liked", title_phrase(a.title)), Link("liked", title_phrase(b.title))]
        common = _by_telling(sorted(set(a.shared) & set(b.shared)))
        return links + [_attr_link(x) for x in common[:1]], [a.id, b.id]
    s = history[0]
    attrs = _by_telling(s.shared)
    if is_weak(s.shared) and "itemknn" in s.by:
        # Weak in attributes, but a true co-occurrence: say that.
        link = Link("co-liked", f"people who liked {title_phrase(s.title)}")
        return [link, *(_attr_link(x) for x in attrs[:1])], [s.id]
    links = [Link("liked", title_phrase(s.title)), *(_attr_link(x) for x in attrs[:2])]
    if len(links) == 1:
        links += [_attr_link(x) for x in s.shared if x[:1].isdigit()][:1]
    return links, [s.id]


def choose_links(item: Item, evidence: Evidence) -> tuple[list[Link], list[str]]:
    """(the facts the sentence must carry, most telling first; the ids it cites). At most
    ``MAX_LINKS`` facts, each phrase plain ASCII and distinct (case aside)."""
    history = [s for s in evidence.history if title_phrase(s.title) and s.id != item.id]
    links, cites = _support_links(history) if history else ([], [])
    request = [Link("request", w) for w in evidence.request if _plain(w)]
    # A request word is a strong link: it takes the last place of a history link.
    if history and request:
        links = links[: MAX_LINKS - 1] + request[:1]
    links += request[:2] + ([] if history else _own_links(item))
    out: dict[str, Link] = {}
    for link in links:
        key = link.phrase.lower()
        if link.phrase and not any(key in k or k in key for k in out):
            out[key] = link
    return list(out.values())[:MAX_LINKS], cites


def _literal(text: str) -> str:
    r"""``text`` as a regex literal (spaces stay spaces: some grammar engines reject ``\ ``)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def word_budget(max_chars: int) -> tuple[int, int, int]:
    """Free words allowed (before the first phrase, between two phrases, after the last):
    6, 5 and 10 at the default 120 characters."""
    return max(3, max_chars // 20), max(2, max_chars // 24), max(4, max_chars // 12)


def sentence_pattern(phrases: Sequence[str], max_chars: int) -> str:
    """One sentence that holds every phrase verbatim, in any order: a capitalised first
    word, a few free words (:func:`word_budget`) before, between and after the phrases,
    single spaces, one period. A phrase stands as a whole word (a space before it; a space
    or a comma after it), and the sentence ends on a word or a phrase (never a comma or a
    number fragment)."""
    lead, between, after = word_budget(max_chars)
    lits = [_literal(p) for p in phrases]
    if not lits:
        return rf"^[A-Z](?:{WORD})?(?: {WORD},?){{2,{after}}} {LAST}\.$"
    gap = rf",? (?:{WORD},? ){{0,{between}}}"
    body = "|".join(gap.join(lits[i] for i in order) for order in permutations(range(len(lits))))
    tail = rf"(?:,?(?: {WORD},?){{0,{after - 1}}} {LAST})?"
    return rf"^[A-Z](?:{WORD})?,?(?: {WORD},?){{0,{lead - 1}}} (?:{body}){tail}\.$"


def answer_model(cites: Sequence[str], phrases: Sequence[str], max_chars: int) -> type[BaseModel]:
    """The answer schema: exactly the chosen cites (an enum) and a sentence holding every
    chosen phrase (:func:`sentence_pattern`)."""
    cite: Any
    if cites:
        n = len(cites)
        cite = (list[Literal[tuple(cites)]], Field(min_length=n, max_length=n))  # type: ignore[valid-type,misc]
    else:
        cite = (list[str], Field(max_length=0))
    return create_model(
        "Linked",
        __config__=ConfigDict(extra="forbid"),
        cites=cite,
        rationale=(str, Field(pattern=sentence_pattern(phrases, max_chars))),
    )


@lru_cache(maxsize=4096)
def schema_regex(cites: tuple[str, ...], phrases: tuple[str, ...], max_chars: int) -> str:
    from outlines_core.json_schema import build_regex_from_schema

    schema = TypeAdapter(answer_model(cites, phrases, max_chars)).json_schema()
    return str(build_regex_from_schema(json.dumps(schema), whitespace_pattern=r" ?"))


def max_tokens(cites: Sequence[str], phrases: Sequence[str], max_chars: int) -> int:
    """Room for the phrases (~3 characters a token), the free words (~2 tokens each), the
    ids and the JSON."""
    lead, between, after = word_budget(max_chars)
    words = lead + between * max(0, len(phrases) - 1) + after
    return sum(len(p) for p in phrases) // 3 + 2 * words + 8 * len(cites) + 24


def prompt_context(
    item: Item, evidence: Evidence, query: str | None, profile: str | None = None
) -> dict[str, Any]:
    """What prompts/explain_linked.*.j2 receive, and the chosen links and cites."""
    links, cites = choose_links(item, evidence)
    titles = {s.id: safe_title(s.title) for s in evidence.history}
    return {
        "item": {"title": safe_title(item.title)},
        "liked": [titles[c] for c in cites],
        "coliked": any(link.kind == "co-liked" for link in links),
        "query": query,
        "profile": profile,
        "phrases": [link.phrase for link in links],
        "links": links,
        "cites": cites,
        # Which of the prompt's example wordings this item sees (stable across runs).
        "example": zlib.crc32(item.id.encode("utf-8")),
    }


def shares_text(shared: Sequence[str]) -> str:
    """ "genre Action", "genre Thriller", "tag heist", "1990s" -> "the genres Action and
    Thriller, the tag heist and the 1990s" (how the prompt words the evidence)."""
    genres = [a.split(" ", 1)[1] for a in shared if a.startswith("genre ")]
    tags = [a.split(" ", 1)[1] for a in shared if a.startswith("tag ")]
    other = [a for a in shared if not a.startswith(("genre ", "tag "))]

    def join(words: list[str]) -> str:
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]

    parts = []
    if genres:
        parts.append(("the genre " if len(genres) == 1 else "the genres ") + join(genres))
    if tags:
        parts.append(("the tag " if len(tags) == 1 else "the tags ") + join(tags))
    parts += [f"the {o}" for o in other]
    return join(parts) if parts else ""


def floor_sentence(item: Item, evidence: Evidence) -> tuple[str, list[str]]:
    """The linked format's floor: when every sentence the model wrote failed the checks,
    the evidence format's template sentence (``"Like <title>, it shares ..."``, or for a
    request without history ``"A <year> <genre> film, as asked."``), true by construction
    and counted as template-reducible by the harness. ("", []) when the evidence holds
    nothing to say."""
    links, cites = choose_links(item, evidence)
    support = {h.id: h for h in evidence.history}
    if cites and cites[0] in support:
        s = support[cites[0]]
        title = display_title(safe_title(s.title))
        if any(link.kind == "co-liked" for link in links) or not s.shared:
            return f"Popular with people who also liked {title}.", [s.id]
        return f"Like {title}, it shares {shares_text(s.shared)}.", [s.id]
    genres = _own_genres(item)
    year = item.metadata.get("year")
    if not genres or not isinstance(year, int) or isinstance(year, bool):
        return "", []
    genre = genres[0].lower()
    if evidence.request:
        return f"{article(str(year)).capitalize()} {year} {genre} film, as asked.", []
    return f"{article(genre).capitalize()} {genre} film from the {year // 10 * 10}s.", []
