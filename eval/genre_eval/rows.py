"""Row helpers the dataset loaders share: required files, numbers, titles, benchmark items."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genre_agent.catalog.items import Item, genre_key, validate_rows
from genre_agent.errors import CatalogError, RowProblem

# The longest title an Item takes; the benchmark loaders cut longer ones (with a warning).
TITLE_CHARS: int = next(
    m.max_length for m in Item.model_fields["title"].metadata if hasattr(m, "max_length")
)


def need_file(path: Path) -> Path:
    """``path``, or a CatalogError naming it when it does not exist."""
    if not path.exists():
        raise CatalogError([RowProblem(str(path), 0, "<file>", "file not found")])
    return path


def number(path: Path, line: int, name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise CatalogError([RowProblem(str(path), line, name, "not a number", raw)]) from None


def item_title(raw: str, item_id: str, where: str, notes: list[str]) -> str:
    """An item's title (its id when empty). One longer than an Item title may be is cut, with
    a warning naming ``where`` (file:line): benchmark files cannot be edited, and the
    ranker shows titles cut anyway."""
    text = raw.strip() or item_id
    if len(text) > TITLE_CHARS:
        notes.append(
            f"{where}: field 'title': {len(text)} characters, cut to {TITLE_CHARS} "
            f"(value {text[:40] + '…'!r})"
        )
        text = text[: TITLE_CHARS - 1].rstrip() + "…"
    return text


def item_row(item_id: str, title: str, genres: list[str]) -> dict[str, Any]:
    """The raw Item of a benchmark row: genres as text, as ``genres`` and as flags."""
    meta: dict[str, Any] = {"genres": "|".join(genres)}
    for g in genres:
        meta[genre_key(g)] = True
    text = ("Genres: " + ", ".join(genres) + ".") if genres else ""
    return {"id": item_id, "title": title, "text": text, "metadata": meta}


def id_items(ids: Iterable[str], path: Path) -> list[Item]:
    """Items known by id only (no item file): the id is the title."""
    return validate_rows(((0, item_row(i, i, [])) for i in sorted(set(ids))), str(path))
