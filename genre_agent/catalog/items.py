"""Catalog items and loaders (JSONL, CSV, Parquet, MovieLens) with row-level validation.

Policy: a file with any bad row is rejected as a whole. Every bad row is reported (file, line,
field, reason, value) in one CatalogError, and nothing from that file reaches the index, so an
index built earlier keeps answering exactly as before.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from genre_agent.catalog.decoding import DecodedLines as DecodedLines
from genre_agent.errors import CatalogError, RowProblem

_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
# Metadata keys Chroma refuses or reserves ('$' and '#' are its operators and internal keys,
# 'chroma:' its own fields) and '_', which GENRE's own record fields use.
RESERVED_KEY_PREFIXES = ("_", "$", "#", "chroma:")
_INT64 = (-(2**63), 2**63 - 1)


def _not_utf8(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (a lone surrogate, e.g. from JSON "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate {text[exc.start]!r}, which is not valid UTF-8"
    return None


def metadata_key_problem(key: object) -> str | None:
    """Why Chroma (or GENRE) would refuse ``key`` as a metadata key; None if it is fine."""
    if not isinstance(key, str):
        return f"metadata key must be a string, not {type(key).__name__}"
    if not key:
        return "metadata key is empty"
    for prefix in RESERVED_KEY_PREFIXES:
        if key.startswith(prefix):
            return (
                f"metadata key starts with reserved {prefix!r} "
                f"(keys may not start with {', '.join(map(repr, RESERVED_KEY_PREFIXES))})"
            )
    return _not_utf8(key)


def metadata_value_problem(value: object) -> str | None:
    """Why Chroma would refuse or silently drop ``value``; None if it is fine.

    Chroma stores NaN and Infinity as null (the value is lost) and integers beyond 64 bits as
    floats, and refuses lists of mixed types; so only finite scalars are accepted.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            return "integer outside the 64-bit range"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "NaN and Infinity are not allowed"
    if isinstance(value, str):
        return _not_utf8(value)
    return f"must be a string, number or boolean, not {type(value).__name__}"


def _check_key(key: str) -> str:
    reason = metadata_key_problem(key)
    if reason:
        raise ValueError(reason)
    return key


def _check_value(value: Any) -> Any:
    reason = metadata_value_problem(value)
    if reason:
        raise ValueError(reason)
    return value


MetaKey = Annotated[str, AfterValidator(_check_key)]
MetaValue = Annotated[str | int | float | bool, BeforeValidator(_check_value)]


class Item(BaseModel):
    """A catalog item: a stable id, a title, free text, and flat metadata."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=500)
    text: str = Field("", max_length=20000)
    metadata: dict[MetaKey, MetaValue] = Field(default_factory=dict)

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

    @field_validator("title", "text")
    @classmethod
    def _utf8(cls, v: str) -> str:
        reason = _not_utf8(v)
        if reason:
            raise ValueError(reason)
        return v

    def document(self) -> str:
        """The text that is embedded and shown to the LLM."""
        return f"{self.title}. {self.text}".strip() if self.text else self.title


def _problems_from(exc: ValidationError, file: str, line: int) -> list[RowProblem]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if loc[-1:] == ["[key]"]:  # a dict key failed: name the key, not pydantic's marker
            loc = loc[:-1]
        field = ".".join(loc) or "<row>"
        value = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        out.append(
            RowProblem(file, line, field, msg, "" if isinstance(value, dict) else str(value))
        )
    return out


def validate_rows(rows: Iterable[tuple[int, dict[str, Any]] | RowProblem], file: str) -> list[Item]:
    """Turn (line, raw dict) rows into Items; raise one CatalogError listing all bad rows.

    A reader passes a RowProblem in place of a row it could not read (bad encoding, bad JSON),
    so every bad line of a file is reported together.
    """
    items: list[Item] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for entry in rows:
        if isinstance(entry, RowProblem):
            problems.append(entry)
            continue
        line, raw = entry
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


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]] | RowProblem]:
    lines = DecodedLines(path)
    for line in lines:
        yield from lines.drain()
        line_no = lines.line
        if not line.strip():
            continue
        shown = line.rstrip("\r\n")
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RowProblem(
                str(path),
                line_no,
                "<json>",
                f"invalid JSON at column {exc.colno}: {exc.msg}",
                shown,
            )
            continue
        except RecursionError:
            yield RowProblem(str(path), line_no, "<json>", "invalid JSON: nested too deeply")
            continue
        if not isinstance(raw, dict):
            yield RowProblem(str(path), line_no, "<row>", "expected a JSON object", shown)
            continue
        yield line_no, raw
    yield from lines.drain()


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


def csv_dict_rows(
    path: Path, required: Iterable[str] = ()
) -> Iterator[tuple[int, dict[str, Any]] | RowProblem]:
    """(line, row) for each CSV record, or a RowProblem for a line that could not be read.

    The header must name every column in ``required`` (else one CatalogError at once).
    """
    lines = DecodedLines(path)
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise CatalogError([*lines.drain(), RowProblem(str(path), 1, "<csv>", str(exc))]) from None
    if header is None and lines.problems:  # nothing was readable (a UTF-16 file)
        raise CatalogError(lines.drain())
    missing = [c for c in required if c not in (header or [])]
    if missing:
        raise CatalogError(
            [
                *lines.drain(),
                RowProblem(
                    str(path),
                    1,
                    missing[0],
                    f"header has no {missing[0]!r} column",
                    ",".join(header or []),
                ),
            ]
        )
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield from lines.drain()
            yield RowProblem(str(path), lines.line, "<csv>", str(exc))
            continue
        yield from lines.drain()
        if None in row:
            yield RowProblem(str(path), lines.line, "<row>", "more fields than header")
            continue
        yield lines.line, row
    yield from lines.drain()


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]] | RowProblem]:
    for entry in csv_dict_rows(path, required=["id"]):
        yield entry if isinstance(entry, RowProblem) else (entry[0], _flat_row(entry[1]))


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]] | RowProblem]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        reason = f"not a readable Parquet file: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        raise CatalogError([RowProblem(str(path), 0, "<file>", reason)]) from None
    for idx, row in enumerate(rows, start=1):
        if "metadata" in row and isinstance(row["metadata"], dict):
            raw = {k: row.get(k) for k in ("id", "title", "text", "metadata") if k in row}
        else:
            raw = _flat_row(row)
        # A float id column (pandas turns an int column with a gap into floats) is read as the
        # whole number it holds: 1.0 -> "1". Anything else (1.5, NaN) is refused, not guessed.
        value = row.get("id")
        if isinstance(value, float):
            if not value.is_integer():
                yield RowProblem(
                    str(path), idx, "id", "a float id must be a whole number", repr(value)
                )
                continue
            raw["id"] = str(int(value))
        yield idx, raw


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
    readers = {".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows, ".csv": _csv_rows}
    readers.update({".parquet": _parquet_rows, ".pq": _parquet_rows})
    if suffix in readers:
        try:
            return validate_rows(readers[suffix](path), str(path))
        except OSError as exc:
            reason = f"cannot read: {exc.strerror or exc}"
            raise CatalogError([RowProblem(str(path), 0, "<file>", reason)]) from None
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
    tag_problems: list[RowProblem] = []
    tags_path = directory / "tags.csv"
    if tags_path.exists():
        for entry in csv_dict_rows(tags_path, required=["movieId", "tag"]):
            if isinstance(entry, RowProblem):
                tag_problems.append(entry)
                continue
            row = entry[1]
            tag = (row.get("tag") or "").strip()
            bucket = tags[row["movieId"]]
            if tag and tag.lower() not in {t.lower() for t in bucket} and len(bucket) < max_tags:
                bucket.append(tag)

    def rows() -> Iterator[tuple[int, dict[str, Any]] | RowProblem]:
        yield from tag_problems
        for entry in csv_dict_rows(movies, required=["movieId", "title"]):
            if isinstance(entry, RowProblem):
                yield entry
                continue
            line_num, row = entry
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
                line_num,
                {
                    "id": row.get("movieId"),
                    "title": title,
                    "text": " ".join(text_parts),
                    "metadata": meta,
                },
            )

    return validate_rows(rows(), str(movies))
