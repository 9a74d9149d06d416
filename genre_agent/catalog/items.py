"""Catalog items and loaders (JSONL, CSV, Parquet, MovieLens) with row-level validation.

Policy: a file with any bad row is rejected as a whole. Every bad row is reported (file, line,
field, reason, value) in one CatalogError, and nothing from that file reaches the index, so an
index built earlier keeps answering exactly as before.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genre_agent.errors import CatalogError, RowProblem

MetaValue = str | int | float | bool
_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class Item(BaseModel):
    """A catalog item: a stable id, a title, free text, and flat metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=500)
    text: str = Field("", max_length=20000)
    metadata: dict[str, MetaValue] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_charset(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("id must be 1-64 chars of letters, digits, '_', '.', ':', '-'")
        return v

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("title is blank")
        return v.strip()

    @field_validator("metadata")
    @classmethod
    def _meta_keys(cls, v: dict[str, MetaValue]) -> dict[str, MetaValue]:
        for key in v:
            if not key or key.startswith("_"):
                raise ValueError(f"metadata key {key!r} must be non-empty and not start with '_'")
        return v

    def document(self) -> str:
        """The text that is embedded and shown to the LLM."""
        return f"{self.title}. {self.text}".strip() if self.text else self.title


def _problems_from(exc: ValidationError, file: str, line: int) -> list[RowProblem]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<row>"
        value = err.get("input")
        out.append(
            RowProblem(file, line, field, err["msg"], "" if isinstance(value, dict) else str(value))
        )
    return out


def validate_rows(rows: Iterable[tuple[int, dict[str, Any]]], file: str) -> list[Item]:
    """Turn (line, raw dict) rows into Items; raise one CatalogError listing all bad rows."""
    items: list[Item] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for line, raw in rows:
        try:
            item = Item.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, file, line))
            continue
        if item.id in seen:
            problems.append(
                RowProblem(file, line, "id", f"duplicate of line {seen[item.id]}", item.id)
            )
            continue
        seen[item.id] = line
        items.append(item)
    if problems:
        raise CatalogError(problems)
    return items


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError(
                    [
                        RowProblem(
                            str(path), line_no, "<json>", f"invalid JSON: {exc.msg}", line[:80]
                        )
                    ]
                ) from None
            if not isinstance(raw, dict):
                raise CatalogError(
                    [RowProblem(str(path), line_no, "<row>", "expected a JSON object", line[:80])]
                )
            yield line_no, raw


def _flat_row(raw: dict[str, Any]) -> dict[str, Any]:
    """CSV/Parquet rows: id,title,text columns; every other column becomes metadata."""
    row = {k: v for k, v in raw.items() if k is not None}
    out: dict[str, Any] = {
        "id": None if row.get("id") is None else str(row.get("id")),
        "title": row.get("title"),
        "text": row.get("text") or "",
    }
    meta = {}
    for key, value in row.items():
        if key in {"id", "title", "text"} or value is None or value == "":
            continue
        if isinstance(key, str) and key.startswith("metadata."):
            key = key[len("metadata.") :]
        meta[key] = value.item() if hasattr(value, "item") else value
    out["metadata"] = meta
    return out


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise CatalogError([RowProblem(str(path), 1, "id", "header has no 'id' column")])
        for row in reader:
            if None in row:
                raise CatalogError(
                    [RowProblem(str(path), reader.line_num, "<row>", "more fields than header")]
                )
            yield reader.line_num, _flat_row(row)


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for idx, row in enumerate(table.to_pylist(), start=1):
        if "metadata" in row and isinstance(row["metadata"], dict):
            yield idx, {k: row.get(k) for k in ("id", "title", "text", "metadata") if k in row}
        else:
            yield idx, _flat_row(row)


def load_items(path: str | Path) -> list[Item]:
    """Load a catalog file by extension (.jsonl, .csv, .parquet) or a MovieLens directory.

    Line numbers are 1-based file lines (for Parquet: 1-based row numbers).
    """
    path = Path(path)
    if path.is_dir():
        return load_movielens_items(path)
    if not path.exists():
        raise CatalogError([RowProblem(str(path), 0, "<file>", "file not found")])
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return validate_rows(_jsonl_rows(path), str(path))
    if suffix == ".csv":
        return validate_rows(_csv_rows(path), str(path))
    if suffix in {".parquet", ".pq"}:
        return validate_rows(_parquet_rows(path), str(path))
    raise CatalogError(
        [RowProblem(str(path), 0, "<file>", f"unknown extension {suffix!r}; use jsonl/csv/parquet")]
    )


_YEAR_RE = re.compile(r"\((\d{4})\)\s*$")


def genre_key(genre: str) -> str:
    """Metadata key of a genre flag: 'Sci-Fi' -> 'genre_sci_fi'."""
    return "genre_" + re.sub(r"[^a-z0-9]+", "_", genre.lower()).strip("_")


def load_movielens_items(directory: str | Path, max_tags: int = 8) -> list[Item]:
    """MovieLens movies.csv (+ tags.csv if present) as Items.

    Metadata: ``year`` (int, when the title carries one), ``genres`` ("A|B") and one boolean
    flag per genre (``genre_comedy``...), which Chroma ``where`` filters can use.
    """
    directory = Path(directory)
    movies = directory / "movies.csv"
    if not movies.exists():
        raise CatalogError([RowProblem(str(movies), 0, "<file>", "movies.csv not found")])
    tags: dict[str, list[str]] = defaultdict(list)
    tags_path = directory / "tags.csv"
    if tags_path.exists():
        with tags_path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                tag = (row.get("tag") or "").strip()
                bucket = tags[row["movieId"]]
                if (
                    tag
                    and tag.lower() not in {t.lower() for t in bucket}
                    and len(bucket) < max_tags
                ):
                    bucket.append(tag)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        with movies.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                title = (row.get("title") or "").strip()
                genres = (
                    []
                    if row.get("genres") in (None, "(no genres listed)")
                    else row["genres"].split("|")
                )
                meta: dict[str, Any] = {"genres": "|".join(genres)}
                match = _YEAR_RE.search(title)
                if match:
                    meta["year"] = int(match.group(1))
                for g in genres:
                    meta[genre_key(g)] = True
                text_parts = []
                if genres:
                    text_parts.append("Genres: " + ", ".join(genres) + ".")
                if tags.get(row.get("movieId", "")):
                    text_parts.append("Tags: " + ", ".join(tags[row["movieId"]]) + ".")
                yield (
                    reader.line_num,
                    {
                        "id": row.get("movieId"),
                        "title": title,
                        "text": " ".join(text_parts),
                        "metadata": meta,
                    },
                )

    return validate_rows(rows(), str(movies))
