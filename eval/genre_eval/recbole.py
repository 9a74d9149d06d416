"""RecBole atomic files: interactions (``.inter`` + ``.item``) and the sequential benchmark
files (``NAME.{train,valid,test}.inter`` with an ``item_id_list`` history per row).

The readers return the parts of a dataset (:class:`Loaded`); ``genre_eval.datasets``
turns them into a Dataset. See docs/eval.md, "Datasets", for what ``dataset.path`` may name.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from genre_agent.catalog.items import Item, validate_rows
from genre_agent.errors import CatalogError, RowProblem
from genre_agent.storage.interactions import Interaction
from genre_eval.rows import id_items, item_row, item_title, need_file, number

# Column names (without their RecBole ":type") read as an item's genres when no genre_field
# is given; RecBole's own ml-100k calls it "class".
GENRE_COLUMNS = ("genre", "genres", "class")
# RecBole's sequential benchmark files: NAME.train.inter, NAME.valid.inter, NAME.test.inter.
SEQ_SPLITS = ("train", "valid", "test")


class Loaded(NamedTuple):
    name: str
    interactions: list[Interaction]
    items: list[Item]
    # What the reader could not use or had to change (Dataset.warnings).
    notes: list[str]


def _names(header: list[str]) -> list[str]:
    """Column names of a RecBole header, without their ``:type``."""
    return [h.split(":")[0] for h in header]


def _recbole_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A RecBole atomic file: tab-separated, header ``name:type`` per column. Returns the
    header as written (names with types) and the (line, fields) rows."""
    with need_file(path).open(encoding="utf-8", newline="") as fh:
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
    """Index of the item file's genre column: the one ``wanted`` names (with or without its
    ``:type``), else the first of GENRE_COLUMNS, else a token_seq column named ``*genre*``;
    None, with a warning naming the file and its columns, when there is none."""
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


def _recbole_items(item_path: Path, genre_field: str | None, notes: list[str]) -> list[Item]:
    iheader, irows = _recbole_table(item_path)
    icol = {n: i for i, n in enumerate(_names(iheader))}
    if "item_id" not in icol:
        raise CatalogError([RowProblem(str(item_path), 1, "item_id", "column missing in header")])
    title_col = next((c for c in ("movie_title", "title", "name") if c in icol), None)
    gcol = _genre_column(item_path, iheader, genre_field, notes)

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for line, row in irows:
            item_id = row[icol["item_id"]]
            raw = row[icol[title_col]] if title_col else ""
            genres = row[gcol].split() if gcol is not None else []
            yield (
                line,
                item_row(item_id, item_title(raw, item_id, f"{item_path}:{line}", notes), genres),
            )

    return validate_rows(rows(), str(item_path))


def read_recbole(path: Path, genre_field: str | None = None) -> Loaded:
    """RecBole atomic files: ``STEM.inter`` and (optional) ``STEM.item``; see
    :func:`_recbole_inter_file` for what ``path`` may name."""
    inter_path, stem = _recbole_inter_file(path)
    header, rows = _recbole_table(inter_path)
    names = _names(header)
    if "item_id_list" in names:  # each row is (history, next item): not one interaction
        reason = (
            "a RecBole sequential file (history list + next item), which "
            'kind = "recbole" would misread: use kind = "recbole-seq"'
        )
        raise CatalogError([RowProblem(str(inter_path), 1, "item_id_list", reason)])
    for column in ("user_id", "item_id"):
        if column not in names:
            reason = "column missing in header"
            raise CatalogError([RowProblem(str(inter_path), 1, column, reason)])
    col = {n: i for i, n in enumerate(names)}
    inter = []
    for line, row in rows:
        ts = (
            number(inter_path, line, "timestamp", row[col["timestamp"]])
            if "timestamp" in col
            else 0.0
        )
        rating = number(inter_path, line, "rating", row[col["rating"]]) if "rating" in col else None
        inter.append(Interaction(row[col["user_id"]], row[col["item_id"]], ts, rating))
    notes: list[str] = []
    item_path = _recbole_item_file(inter_path, stem, notes)
    if item_path is not None:
        items = _recbole_items(item_path, genre_field, notes)
    else:
        items = id_items((r.item_id for r in inter), inter_path)
    return Loaded(stem, inter, items, notes)


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
    return stem, [need_file(base / f"{stem}.{split}.inter") for split in SEQ_SPLITS]


def _seq_columns(file: Path, header: list[str]) -> tuple[dict[str, int], str]:
    """The column index of every name, and the user column (user_id or session_id)."""
    col = {n: i for i, n in enumerate(_names(header))}
    user = next((u for u in ("user_id", "session_id") if u in col), "")
    if not user or "item_id_list" not in col or "item_id" not in col:
        reason = (
            "a sequential file needs user_id (or session_id), item_id_list and item_id; "
            f"columns: {', '.join(header)}"
        )
        raise CatalogError([RowProblem(str(file), 1, "<header>", reason)])
    return col, user


def read_recbole_seq(path: Path, genre_field: str | None = None) -> Loaded:
    """RecBole's sequential benchmark files: NAME.train/valid/test.inter, one row per
    (user, ``item_id_list`` history, next ``item_id``), plus optional NAME.item.

    Each user's sequence is rebuilt by reading the files in the order train, valid, test: a
    user's first row gives its history and target; every later row must continue the
    sequence (its history, possibly cut to its last items by RecBole's
    MAX_ITEM_LIST_LENGTH, ends the sequence so far) and adds its target. Interactions get
    their positions as timestamps. The harness then splits each sequence itself (last item:
    test, the one before: validation), which are the files' targets when every user has one
    row in each of valid and test; a warning counts the users for whom that is not so."""
    stem, files = _seq_files(path)
    seqs: dict[str, list[str]] = {}
    rows_in: dict[str, dict[str, int]] = {}
    for split, file in zip(SEQ_SPLITS, files, strict=True):
        header, rows = _recbole_table(file)
        col, user = _seq_columns(file, header)
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
                problems.append(RowProblem(str(file), line, "item_id_list", reason, " ".join(hist)))
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
        items = _recbole_items(item_path, genre_field, notes)
    else:
        items = id_items((r.item_id for r in inter), files[0])
    return Loaded(stem, inter, items, notes)
