"""Evaluation datasets: interactions + item text from MovieLens, RecBole or JSONL files.

Every loader returns a :class:`Dataset` whose ``sha256`` is computed over the canonical
interactions and items, so a result file says exactly which data it was measured on.
What a loader could not use or had to change (a RecBole item file without a genre column)
is listed in ``Dataset.warnings`` and raised as a :class:`DatasetWarning` by
:func:`load_dataset`; ``genre eval run`` prints them and records them in manifest.json.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from genre_agent.catalog.items import Item, load_items, load_movielens_items, validate_rows
from genre_agent.errors import CatalogError, RowProblem
from genre_agent.storage.interactions import (
    Interaction,
    TieOrder,
    read_interactions,
    time_ordered,
)
from genre_eval.recbole import read_recbole, read_recbole_seq
from genre_eval.rows import item_row, item_title, need_file, number

DatasetKind = Literal["movielens", "ml-100k", "ml-1m", "recbole", "recbole-seq", "jsonl"]
RECBOLE_KINDS = ("recbole", "recbole-seq")

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


class DatasetConfig(BaseModel):
    """Which dataset to load. ``path`` is a directory (or a RecBole file prefix)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: DatasetKind = "movielens"
    path: Path
    # Interactions rated below this are dropped (None keeps all, as implicit feedback).
    min_rating: float | None = None
    # RecBole item files: the column holding each item's genres ("class" or
    # "class:token_seq"). None: the first of recbole.GENRE_COLUMNS, else a token_seq column
    # whose name contains "genre"; with none of these the items have no genres (a warning).
    genre_field: str | None = None

    @model_validator(mode="after")
    def _genre_field_is_recbole(self) -> DatasetConfig:
        if self.genre_field is not None and self.kind not in RECBOLE_KINDS:
            raise ValueError(
                f"genre_field names a column of a RecBole item file; kind {self.kind!r} "
                "reads its genres from its own fixed column"
            )
        return self


class DatasetWarning(UserWarning):
    """Data a loader could not use, or changed to use it; the dataset still loads."""


@dataclass
class Dataset:
    name: str
    interactions: list[Interaction]
    items: dict[str, Item]
    sha256: str = ""
    by_user: dict[str, list[Interaction]] = field(default_factory=dict)
    # What the loader could not use or had to change, one message per problem.
    warnings: list[str] = field(default_factory=list)
    # How each user's rows that share a timestamp are ordered in ``by_user`` (and so which
    # of them is held out): a draw seeded by (tie_seed, user), or by item id (the old rule);
    # see storage.interactions.time_ordered. Either way the order never depends on the
    # order of the rows in the file.
    ties: TieOrder = "random"
    tie_seed: int = 0

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = dataset_hash(self.interactions, self.items)
        if not self.by_user:
            grouped: dict[str, list[Interaction]] = {}
            for row in self.interactions:
                grouped.setdefault(row.user_id, []).append(row)
            self.by_user = {
                u: time_ordered(rows, self.tie_seed, self.ties)
                for u, rows in sorted(grouped.items())
            }

    def ordered(self, ties: TieOrder, seed: int) -> Dataset:
        """This dataset with its users' ties ordered by ``ties`` and ``seed``."""
        if (ties, seed) == (self.ties, self.tie_seed):
            return self
        return replace(self, by_user={}, ties=ties, tie_seed=seed)


def dataset_hash(interactions: list[Interaction], items: dict[str, Item]) -> str:
    """SHA-256 of sorted interaction tuples then sorted items (canonical JSON)."""
    digest = hashlib.sha256()
    for r in sorted(interactions, key=lambda r: (r.user_id, r.item_id, r.timestamp)):
        digest.update(json.dumps([r.user_id, r.item_id, r.timestamp, r.rating]).encode())
    digest.update(b"\x00items\x00")
    for key in sorted(items):
        digest.update(json.dumps(items[key].model_dump(mode="json"), sort_keys=True).encode())
    return digest.hexdigest()


def _finish(
    name: str,
    rows: list[Interaction],
    items: list[Item],
    notes: list[str],
    cfg: DatasetConfig,
) -> Dataset:
    by_id = {it.id: it for it in items}
    if cfg.min_rating is not None:
        rows = [r for r in rows if r.rating is None or r.rating >= cfg.min_rating]
    unknown = sorted({r.item_id for r in rows} - set(by_id))
    if unknown:
        raise CatalogError(
            [
                RowProblem(str(cfg.path), 0, "item_id", "interaction names an unknown item", u)
                for u in unknown
            ]
        )
    return Dataset(name, rows, by_id, warnings=list(notes))


def _ml_items(
    path: Path, sep: str, encoding: str, genre_flags: bool, notes: list[str]
) -> list[Item]:
    def rows() -> Iterator[tuple[int, dict[str, Any]] | RowProblem]:
        with need_file(path).open(encoding=encoding) as fh:
            for n, line in enumerate(fh, start=1):
                line = line.rstrip("\n")
                if not line:
                    continue
                parts = line.split(sep)
                if len(parts) < (2 + len(ML100K_GENRES) if genre_flags else 3):
                    yield RowProblem(str(path), n, "<row>", "too few fields", line)
                    continue
                if genre_flags:  # ML-100K: 19 trailing 0/1 genre columns
                    flags = parts[-len(ML100K_GENRES) :]
                    genres = [g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1"]
                    genres = [g for g in genres if g != "unknown"]
                else:
                    genres = [g for g in parts[2].split("|") if g]
                title = item_title(parts[1], parts[0], f"{path}:{n}", notes)
                yield n, item_row(parts[0], title, genres)

    return validate_rows(rows(), str(path))


def _ml_ratings(path: Path, sep: str) -> list[Interaction]:
    rows = []
    with need_file(path).open(encoding="latin-1") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.strip().split(sep)
            if len(parts) != 4:
                raise CatalogError(
                    [RowProblem(str(path), n, "<row>", "expected user, item, rating, time", line)]
                )
            rating = number(path, n, "rating", parts[2])
            ts = number(path, n, "timestamp", parts[3])
            rows.append(Interaction(parts[0], parts[1], ts, rating))
    return rows


def load_movielens(cfg: DatasetConfig) -> Dataset:
    """ml-latest-small style: ratings.csv + movies.csv (+ tags.csv)."""
    items = load_movielens_items(cfg.path)
    rows = read_interactions(need_file(cfg.path / "ratings.csv"))
    return _finish(cfg.path.name, rows, items, [], cfg)


def load_ml100k(cfg: DatasetConfig) -> Dataset:
    """ML-100K: tab-separated u.data and '|'-separated u.item (latin-1)."""
    notes: list[str] = []
    items = _ml_items(cfg.path / "u.item", "|", "latin-1", True, notes)
    return _finish(cfg.path.name, _ml_ratings(cfg.path / "u.data", "\t"), items, notes, cfg)


def load_ml1m(cfg: DatasetConfig) -> Dataset:
    """ML-1M: '::'-separated ratings.dat and movies.dat (latin-1)."""
    notes: list[str] = []
    items = _ml_items(cfg.path / "movies.dat", "::", "latin-1", False, notes)
    return _finish(cfg.path.name, _ml_ratings(cfg.path / "ratings.dat", "::"), items, notes, cfg)


def load_recbole(cfg: DatasetConfig) -> Dataset:
    """RecBole atomic files ``NAME.inter`` (+ ``NAME.item``); see genre_eval.recbole."""
    return _finish(*read_recbole(cfg.path, cfg.genre_field), cfg)


def load_recbole_seq(cfg: DatasetConfig) -> Dataset:
    """RecBole's sequential benchmark files; see genre_eval.recbole.read_recbole_seq."""
    return _finish(*read_recbole_seq(cfg.path, cfg.genre_field), cfg)


def load_jsonl(cfg: DatasetConfig) -> Dataset:
    """``interactions.jsonl`` (user_id, item_id, timestamp, rating) + ``items.jsonl`` (Item)."""
    items = load_items(need_file(cfg.path / "items.jsonl"))
    rows = read_interactions(need_file(cfg.path / "interactions.jsonl"))
    return _finish(cfg.path.name, rows, items, [], cfg)


LOADERS: dict[str, Callable[[DatasetConfig], Dataset]] = {
    "movielens": load_movielens,
    "ml-100k": load_ml100k,
    "ml-1m": load_ml1m,
    "recbole": load_recbole,
    "recbole-seq": load_recbole_seq,
    "jsonl": load_jsonl,
}


def load_dataset(cfg: DatasetConfig) -> Dataset:
    """Load ``cfg``; each of the dataset's warnings is also raised as a DatasetWarning."""
    ds = LOADERS[cfg.kind](cfg)
    for note in ds.warnings:
        warnings.warn(note, DatasetWarning, stacklevel=2)
    return ds
