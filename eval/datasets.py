"""Evaluation datasets: interactions + item text from MovieLens, RecBole or JSONL files.

Every loader returns a :class:`Dataset` whose ``sha256`` is computed over the canonical
interactions and items, so a result file says exactly which data it was measured on.
What a loader could not use or had to change (a RecBole item file without a genre column)
is listed in ``Dataset.warnings`` and raised as a :class:`DatasetWarning` by
:func:`load_dataset`; ``genre eval run`` prints them and records them in manifest.json.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from genre_agent.catalog.items import Item, genre_key, load_items, load_movielens_items
from genre_agent.errors import CatalogError, RowProblem
from genre_agent.storage.interactions import Interaction, read_interactions

DatasetKind = Literal["movielens", "ml-100k", "ml-1m", "recbole", "recbole-seq", "jsonl"]
RECBOLE_KINDS = ("recbole", "recbole-seq")
# Column names (without their RecBole ":type") read as an item's genres when
# ``DatasetConfig.genre_field`` is unset; RecBole's own ml-100k calls it "class".
GENRE_COLUMNS = ("genre", "genres", "class")
# RecBole's sequential benchmark files: NAME.train.inter, NAME.valid.inter, NAME.test.inter.
SEQ_SPLITS = ("train", "valid", "test")

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
    # "class:token_seq"). None: the first of GENRE_COLUMNS, else a token_seq column whose
    # name contains "genre"; with none of these the items have no genres (a warning).
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

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = dataset_hash(self.interactions, self.items)
        if not self.by_user:
            grouped: dict[str, list[Interaction]] = {}
            for row in self.interactions:
                grouped.setdefault(row.user_id, []).append(row)
            # Ties in time are broken by item id so the split never depends on file order.
            self.by_user = {
                u: sorted(rows, key=lambda r: (r.timestamp, r.item_id))
                for u, rows in sorted(grouped.items())
            }


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
    cfg: DatasetConfig,
    notes: list[str] | None = None,
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
    return Dataset(name, rows, by_id, warnings=list(notes or []))


def _need(path: Path) -> Path:
    if not path.exists():
        raise CatalogError([RowProblem(str(path), 0, "<file>", "file not found")])
    return path


def _int_field(path: Path, line: int, name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise CatalogError([RowProblem(str(path), line, name, "not a number", raw)]) from None


def _ml_items(path: Path, sep: str, encoding: str, genre_flags: bool) -> list[Item]:
    items = []
    with _need(path).open(encoding=encoding) as fh:
        for n, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) < 3:
                raise CatalogError([RowProblem(str(path), n, "<row>", "too few fields", line)])
            if genre_flags:  # ML-100K: 19 trailing 0/1 genre columns
                genres = [g for g, f in zip(ML100K_GENRES, parts[-19:], strict=True) if f == "1"]
                genres = [g for g in genres if g != "unknown"]
            else:
                genres = [g for g in parts[2].split("|") if g]
            meta: dict[str, str | int | float | bool] = {"genres": "|".join(genres)}
            for g in genres:
                meta[genre_key(g)] = True
            text = ("Genres: " + ", ".join(genres) + ".") if genres else ""
            items.append(Item(id=parts[0], title=parts[1] or parts[0], text=text, metadata=meta))
    return items


def _ml_ratings(path: Path, sep: str) -> list[Interaction]:
    rows = []
    with _need(path).open(encoding="latin-1") as fh:
        for n, line in enumerate(fh, start=1):
            parts = line.strip().split(sep)
            if len(parts) != 4:
                raise CatalogError(
                    [RowProblem(str(path), n, "<row>", "expected user, item, rating, time", line)]
                )
            rating = _int_field(path, n, "rating", parts[2])
            ts = _int_field(path, n, "timestamp", parts[3])
            rows.append(Interaction(parts[0], parts[1], ts, rating))
    return rows


def load_movielens(cfg: DatasetConfig) -> Dataset:
    """ml-latest-small style: ratings.csv + movies.csv (+ tags.csv)."""
    items = load_movielens_items(cfg.path)
    return _finish(cfg.path.name, read_interactions(_need(cfg.path / "ratings.csv")), items, cfg)


def load_ml100k(cfg: DatasetConfig) -> Dataset:
    """ML-100K: tab-separated u.data and '|'-separated u.item (latin-1)."""
    items = _ml_items(cfg.path / "u.item", "|", "latin-1", genre_flags=True)
    return _finish(cfg.path.name, _ml_ratings(cfg.path / "u.data", "\t"), items, cfg)


def load_ml1m(cfg: DatasetConfig) -> Dataset:
    """ML-1M: '::'-separated ratings.dat and movies.dat (latin-1)."""
    items = _ml_items(cfg.path / "movies.dat", "::", "latin-1", genre_flags=False)
    return _finish(cfg.path.name, _ml_ratings(cfg.path / "ratings.dat", "::"), items, cfg)


def _names(header: list[str]) -> list[str]:
    """Column names of a RecBole header, without their ``:type``."""
    return [h.split(":")[0] for h in header]


def _recbole_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A RecBole atomic file: tab-separated, header ``name:type`` per column. Returns the
    header as written (names with types) and the (line, fields) rows."""
    with _need(path).open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if not header:
            raise CatalogError([RowProblem(str(path), 1, "<header>", "empty file")])
        names = _names(header)
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(names):
                raise CatalogError(
                    [
                        RowProblem(
                            str(path),
                            reader.line_num,
                            "<row>",
                            f"{len(row)} fields, header has {len(names)}",
                            "\t".join(row),
                        )
                    ]
                )
            rows.append((reader.line_num, row))
    return header, rows


def _genre_column(
    path: Path, header: list[str], wanted: str | None, notes: list[str]
) -> int | None:
    """Index of the item file's genre column (see ``DatasetConfig.genre_field``)."""
    names = [n.lower() for n in _names(header)]
    if wanted is not None:
        key = wanted.split(":")[0].lower()
        if key not in names:
            reason = f"dataset.genre_field: no such column; columns: {', '.join(header)}"
            raise CatalogError([RowProblem(str(path), 1, wanted.split(":")[0], reason)])
        return names.index(key)
    for want in GENRE_COLUMNS:
        if want in names:
            return names.index(want)
    for i, h in enumerate(header):
        name, _, kind = h.partition(":")
        if kind == "token_seq" and "genre" in name.lower():
            return i
    notes.append(
        f"{path}: no genre column (columns: {', '.join(header)}), so items have no genres; "
        "set dataset.genre_field to the column that holds them"
    )
    return None


def _recbole_inter_file(path: Path) -> tuple[Path, str]:
    """The ``.inter`` file a "recbole" ``dataset.path`` names, and its stem.

    A directory: ``<dir>/<dir name>.inter`` (RecBole's own layout), else its only ``*.inter``;
    several are an error listing them. A file: ``NAME.inter`` or ``NAME.item``. Anything
    else is a prefix ``<dir>/NAME``."""
    if path.is_dir():
        if (path / f"{path.name}.inter").exists():
            return path / f"{path.name}.inter", path.name
        found = sorted(path.glob("*.inter"))
        if len(found) == 1:
            return found[0], found[0].name.removesuffix(".inter")
        reason = "no *.inter file in this directory"
        if found:
            reason = (
                f"{len(found)} *.inter files ({', '.join(f.name for f in found)}); "
                "set dataset.path to the one to read"
            )
            if any(f.name.endswith(f".{s}.inter") for f in found for s in SEQ_SPLITS):
                reason += (
                    "; NAME.train/valid/test.inter are RecBole sequential benchmark files: "
                    'use kind = "recbole-seq"'
                )
        raise CatalogError([RowProblem(str(path), 0, "<file>", reason)])
    if path.suffix in (".inter", ".item"):
        return path.with_suffix(".inter"), path.stem
    return path.with_name(f"{path.name}.inter"), path.name


def _recbole_item_file(inter_path: Path, stem: str, notes: list[str]) -> Path | None:
    """``STEM.item`` next to the interactions; None (a warning) when the directory has no
    ``*.item`` at all."""
    item_path = inter_path.with_name(f"{stem}.item")
    if item_path.exists():
        return item_path
    others = sorted(inter_path.parent.glob("*.item"))
    if others:
        reason = (
            f"file not found (this directory has {', '.join(f.name for f in others)}; "
            f"RecBole pairs {stem}.inter with {stem}.item)"
        )
        raise CatalogError([RowProblem(str(item_path), 0, "<file>", reason)])
    notes.append(f"{item_path}: file not found, so items have their ids as titles and no genres")
    return None


def _recbole_items(item_path: Path, cfg: DatasetConfig, notes: list[str]) -> list[Item]:
    iheader, irows = _recbole_table(item_path)
    icol = {n: i for i, n in enumerate(_names(iheader))}
    if "item_id" not in icol:
        raise CatalogError([RowProblem(str(item_path), 1, "item_id", "column missing in header")])
    title_col = next((c for c in ("movie_title", "title", "name") if c in icol), None)
    gcol = _genre_column(item_path, iheader, cfg.genre_field, notes)
    items = []
    for _line, row in irows:
        genres = row[gcol].split() if gcol is not None else []
        meta: dict[str, str | int | float | bool] = {"genres": "|".join(genres)}
        for g in genres:
            meta[genre_key(g)] = True
        title = row[icol[title_col]] if title_col else row[icol["item_id"]]
        text = ("Genres: " + ", ".join(genres) + ".") if genres else ""
        items.append(
            Item(
                id=row[icol["item_id"]],
                title=title or row[icol["item_id"]],
                text=text,
                metadata=meta,
            )
        )
    return items


def load_recbole(cfg: DatasetConfig) -> Dataset:
    """RecBole atomic files: ``STEM.inter`` and (optional) ``STEM.item``; see
    :func:`_recbole_inter_file` for what ``dataset.path`` may name."""
    inter_path, stem = _recbole_inter_file(cfg.path)
    header, rows = _recbole_table(inter_path)
    names = _names(header)
    if "item_id_list" in names:  # each row is (history, next item): not one interaction
        reason = (
            "a RecBole sequential file (history list + next item), which "
            'kind = "recbole" would misread: use kind = "recbole-seq"'
        )
        raise CatalogError([RowProblem(str(inter_path), 1, "item_id_list", reason)])
    for need in ("user_id", "item_id"):
        if need not in names:
            raise CatalogError([RowProblem(str(inter_path), 1, need, "column missing in header")])
    col = {n: i for i, n in enumerate(names)}
    inter = []
    for line, row in rows:
        ts = (
            _int_field(inter_path, line, "timestamp", row[col["timestamp"]])
            if "timestamp" in col
            else 0.0
        )
        rating = (
            _int_field(inter_path, line, "rating", row[col["rating"]]) if "rating" in col else None
        )
        inter.append(Interaction(row[col["user_id"]], row[col["item_id"]], ts, rating))
    notes: list[str] = []
    item_path = _recbole_item_file(inter_path, stem, notes)
    if item_path is not None:
        items = _recbole_items(item_path, cfg, notes)
    else:
        items = [Item(id=i, title=i) for i in sorted({r.item_id for r in inter})]
    return _finish(stem, inter, items, cfg, notes)


def _seq_files(path: Path) -> tuple[str, list[Path]]:
    """The stem and the NAME.{train,valid,test}.inter files a "recbole-seq" path names: a
    directory holding one such set, one of the files, or a prefix ``<dir>/NAME``."""
    if path.is_dir():
        stems = sorted(f.name.removesuffix(".train.inter") for f in path.glob("*.train.inter"))
        if len(stems) != 1:
            reason = (
                f"{len(stems)} sets of sequential files ({', '.join(stems)}); set "
                "dataset.path to DIR/NAME"
                if stems
                else "no NAME.train.inter in this directory"
            )
            raise CatalogError([RowProblem(str(path), 0, "<file>", reason)])
        base, stem = path, stems[0]
    else:
        stem = path.name
        for split in SEQ_SPLITS:
            stem = stem.removesuffix(f".{split}.inter")
        base = path.parent
    return stem, [_need(base / f"{stem}.{split}.inter") for split in SEQ_SPLITS]


def load_recbole_seq(cfg: DatasetConfig) -> Dataset:
    """RecBole's sequential benchmark files: NAME.train/valid/test.inter, one row per
    (user, ``item_id_list`` history, next ``item_id``), plus optional NAME.item.

    Each user's sequence is rebuilt by reading the files in the order train, valid, test: a
    user's first row gives its history and target; every later row must continue the
    sequence (its history, possibly cut to its last items by RecBole's
    MAX_ITEM_LIST_LENGTH, ends the sequence so far) and adds its target. Interactions get
    their positions as timestamps. The harness then splits each sequence itself (last item:
    test, the one before: validation), which are the files' targets when every user has one
    row in each of valid and test; a warning counts the users for whom that is not so."""
    stem, files = _seq_files(cfg.path)
    seqs: dict[str, list[str]] = {}
    rows_in: dict[str, dict[str, int]] = {}
    for split, path in zip(SEQ_SPLITS, files, strict=True):
        header, rows = _recbole_table(path)
        col = {n: i for i, n in enumerate(_names(header))}
        user = next((u for u in ("user_id", "session_id") if u in col), "")
        if not user or "item_id_list" not in col or "item_id" not in col:
            reason = (
                "a sequential file needs user_id (or session_id), item_id_list and item_id; "
                f"columns: {', '.join(header)}"
            )
            raise CatalogError([RowProblem(str(path), 1, "<header>", reason)])
        problems = []
        for line, row in rows:
            uid, hist, target = (
                row[col[user]],
                row[col["item_id_list"]].split(),
                row[col["item_id"]],
            )
            seq = seqs.setdefault(uid, [])
            if not seq:
                seq.extend(hist)
            elif not hist or seq[-len(hist) :] != hist:
                reason = (
                    f"does not continue user {uid!r}'s sequence so far, which ends "
                    f"{' '.join(seq[-5:])!r}"
                )
                problems.append(RowProblem(str(path), line, "item_id_list", reason, " ".join(hist)))
                continue
            seq.append(target)
            counts = rows_in.setdefault(uid, {})
            counts[split] = counts.get(split, 0) + 1
        if problems:
            raise CatalogError(problems)
    inter = [
        Interaction(uid, item, float(pos), None)
        for uid, seq in seqs.items()
        for pos, item in enumerate(seq)
    ]
    notes: list[str] = []
    odd = sum(1 for c in rows_in.values() if c.get("valid") != 1 or c.get("test") != 1)
    if odd:
        notes.append(
            f"{files[1]}, {files[2]}: {odd} of {len(seqs)} users do not have exactly one row in "
            "each; the harness splits every rebuilt sequence itself (last item: test, the one "
            "before: validation), so for them its targets are not the files'"
        )
    item_path = _recbole_item_file(files[0], stem, notes)
    if item_path is not None:
        items = _recbole_items(item_path, cfg, notes)
    else:
        items = [Item(id=i, title=i) for i in sorted({r.item_id for r in inter})]
    return _finish(stem, inter, items, cfg, notes)


def load_jsonl(cfg: DatasetConfig) -> Dataset:
    """``interactions.jsonl`` (user_id, item_id, timestamp, rating) + ``items.jsonl`` (Item)."""
    items = load_items(_need(cfg.path / "items.jsonl"))
    rows = read_interactions(_need(cfg.path / "interactions.jsonl"))
    return _finish(cfg.path.name, rows, items, cfg)


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
