"""Dataset adapters: every format yields the same interactions; bad rows name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_agent.errors import CatalogError
from genre_eval.datasets import ML100K_GENRES, DatasetConfig, load_dataset
from genre_eval.fixtures import tiny_rows, write_jsonl_dataset

INTER, ITEMS = tiny_rows(n_users=4, n_items=12, per_user=6)


def _genres(it: dict) -> list[str]:
    return str(it["metadata"]["genres"]).split("|")


def write_movielens(d: Path) -> None:
    d.mkdir()
    (d / "movies.csv").write_text(
        "movieId,title,genres\n"
        + "".join(f'{it["id"]},"{it["title"]}",{"|".join(_genres(it))}\n' for it in ITEMS)
    )
    (d / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{r['user_id']},{r['item_id']},{r['rating']},{r['timestamp']}\n" for r in INTER)
    )


def write_ml100k(d: Path) -> None:
    d.mkdir()
    lines = []
    for it in ITEMS:
        flags = ["1" if g in _genres(it) else "0" for g in ML100K_GENRES]
        lines.append(
            "|".join([str(it["id"]), str(it["title"]), "01-Jan-1995", "", "http://x"] + flags)
        )
    (d / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    (d / "u.data").write_text(
        "".join(
            f"{r['user_id']}\t{r['item_id']}\t{int(r['rating'])}\t{r['timestamp']}\n" for r in INTER
        )
    )


def write_ml1m(d: Path) -> None:
    d.mkdir()
    (d / "movies.dat").write_text(
        "".join(f"{it['id']}::{it['title']}::{'|'.join(_genres(it))}\n" for it in ITEMS),
        encoding="latin-1",
    )
    (d / "ratings.dat").write_text(
        "".join(
            f"{r['user_id']}::{r['item_id']}::{int(r['rating'])}::{r['timestamp']}\n" for r in INTER
        )
    )


def write_recbole(d: Path) -> None:
    d.mkdir()
    (d / "tiny.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(
            f"{r['user_id']}\t{r['item_id']}\t{r['rating']}\t{r['timestamp']}\n" for r in INTER
        )
    )
    (d / "tiny.item").write_text(
        "item_id:token\tmovie_title:token_seq\tgenre:token_seq\n"
        + "".join(f"{it['id']}\t{it['title']}\t{' '.join(_genres(it))}\n" for it in ITEMS)
    )


@pytest.mark.parametrize(
    ("kind", "writer", "sub"),
    [
        ("movielens", write_movielens, "ml"),
        ("ml-100k", write_ml100k, "ml100k"),
        ("ml-1m", write_ml1m, "ml1m"),
        ("recbole", write_recbole, "tiny"),
    ],
)
def test_every_format_gives_the_same_sequences(tmp_path: Path, kind: str, writer, sub: str) -> None:
    writer(tmp_path / sub)
    jsonl = load_dataset(
        DatasetConfig(
            kind="jsonl",
            path=write_jsonl_dataset(tmp_path / "j", n_users=4, n_items=12, per_user=6),
        )
    )
    other = load_dataset(DatasetConfig(kind=kind, path=tmp_path / sub))  # type: ignore[arg-type]
    seq = {u: [r.item_id for r in rows] for u, rows in jsonl.by_user.items()}
    assert {u: [r.item_id for r in rows] for u, rows in other.by_user.items()} == seq
    assert len(other.items) == 12
    assert other.items["7"].metadata["genres"] == jsonl.items["7"].metadata["genres"]
    assert len(other.sha256) == 64


def test_hash_changes_with_data_and_not_with_row_order(tmp_path: Path) -> None:
    d = write_jsonl_dataset(tmp_path / "a", n_users=3, n_items=10, per_user=5)
    h1 = load_dataset(DatasetConfig(kind="jsonl", path=d)).sha256
    lines = (d / "interactions.jsonl").read_text().splitlines()
    (d / "interactions.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    assert load_dataset(DatasetConfig(kind="jsonl", path=d)).sha256 == h1
    row = json.loads(lines[0])
    row["timestamp"] += 1
    (d / "interactions.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    assert load_dataset(DatasetConfig(kind="jsonl", path=d)).sha256 != h1


def test_bad_rating_names_file_line_and_field(tmp_path: Path) -> None:
    write_ml1m(tmp_path / "m")
    path = tmp_path / "m" / "ratings.dat"
    lines = path.read_text().splitlines()
    lines[2] = "1::1::five::978300760"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CatalogError) as err:
        load_dataset(DatasetConfig(kind="ml-1m", path=tmp_path / "m"))
    assert f"{path}:3: field 'rating'" in str(err.value)


def test_unknown_item_in_interactions_is_an_error(tmp_path: Path) -> None:
    write_recbole(tmp_path / "tiny")
    inter = tmp_path / "tiny" / "tiny.inter"
    inter.write_text(inter.read_text() + "u1\t999\t4.0\t5\n")
    with pytest.raises(CatalogError, match="unknown item"):
        load_dataset(DatasetConfig(kind="recbole", path=tmp_path / "tiny"))


def test_recbole_wrong_field_count(tmp_path: Path) -> None:
    write_recbole(tmp_path / "tiny")
    inter = tmp_path / "tiny" / "tiny.inter"
    inter.write_text(inter.read_text() + "u1\t3\n")
    with pytest.raises(CatalogError, match=r"tiny.inter:\d+: field '<row>'"):
        load_dataset(DatasetConfig(kind="recbole", path=tmp_path / "tiny"))
