"""Grounding checks for rationales: what an item's evidence lets a sentence mention."""

from __future__ import annotations

import re
from collections.abc import Iterable

from genre_agent.catalog.genres import MOVIELENS_GENRES
from genre_agent.catalog.items import Item
from genre_agent.types import Evidence

_TAGS_RE = re.compile(r"Tags:\s*([^.]*)\.?")
GENRE_WORDS = {g.lower() for g in MOVIELENS_GENRES} | {"sci-fi", "scifi", "science fiction"}


_ARTICLE_RE = re.compile(
    r"^(?P<name>.+), (?P<art>The|A|An|Les|La|Le|L'|Il|Der|Die|Das|El)(?P<rest>\s*\(\d{4}\))?$"
)


def display_title(title: str) -> str:
    """MovieLens writes "Silence of the Lambs, The (1991)"; a sentence wants "The Silence of
    the Lambs (1991)"."""
    m = _ARTICLE_RE.match(title.strip())
    if not m:
        return title
    return f"{m['art']} {m['name']}{m['rest'] or ''}"


def attributes(item: Item) -> set[str]:
    """The item's citable attributes: "genre X", "tag y", "1980s"."""
    out: set[str] = set()
    for g in str(item.metadata.get("genres", "")).split("|"):
        if g.strip():
            out.add(f"genre {g.strip()}")
    tags = item.metadata.get("tags")
    found = [str(tags)] if isinstance(tags, str) else []
    found += _TAGS_RE.findall(item.text)
    for chunk in found:
        for tag in re.split(r"[,|]", chunk):
            if tag.strip():
                out.add(f"tag {tag.strip().lower()}")
    year = item.metadata.get("year")
    if isinstance(year, int) and not isinstance(year, bool):
        out.add(f"{year // 10 * 10}s")
    return out


def evidence_text(item: Item, evidence: Evidence | None, cites: Iterable[str] = ()) -> str:
    """Everything a rationale about ``item`` may mention: the item itself, the cited (or, with
    no cites, all) supporting items, the shared attributes and the request words."""
    parts = [item.title, display_title(item.title), item.text]
    parts.append(str(item.metadata.get("genres", "")).replace("|", " "))
    if evidence is not None:
        cited = set(cites)
        for s in evidence.history:
            if not cited or s.id in cited:
                parts += [s.title, *s.shared]
        # With cites, only what the cited items share counts (not the other support's).
        parts += evidence.request if cited else evidence.shared + evidence.request
    return " ".join(parts)


_DECADE_RE = re.compile(r"\b(?:1[89]|20)\d0s\b")


def unsupported_decades(rationale: str, allowed: str) -> list[str]:
    """Decades ("the 1990s") the rationale names that the allowed text does not hold."""
    return sorted({d for d in _DECADE_RE.findall(rationale) if d not in allowed})


def unsupported_genres(rationale: str, allowed: str) -> list[str]:
    """Genre words the rationale uses that the allowed text never mentions ("The Godfather is
    a horror film" when neither it nor a cited item is a horror film)."""
    text = rationale.lower()
    ok = allowed.lower()
    return sorted(g for g in GENRE_WORDS if re.search(rf"\b{re.escape(g)}\b", text) and g not in ok)
