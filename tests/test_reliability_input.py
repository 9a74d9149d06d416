"""Hostile and broken input: a bad file writes nothing, and every problem is a file:line."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genre_agent import Item, Recommender
from genre_agent.catalog.items import load_items
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.errors import CatalogError, StoreError
from genre_agent.storage.interactions import read_interactions


def _rec(path: Path) -> Recommender:
    return Recommender.from_config(
        {
            "store": {
                "kind": "embedded",
                "path": str(path / "chroma"),
                "interactions_path": str(path / "i.sqlite"),
            },
            "llm": {"engine": "fake"},
        },
        embedder=FakeEmbedder(),
    )


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _problems(path: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(CatalogError) as info:
        load_items(path)
    return [(p.line, p.field, p.reason) for p in info.value.problems]


# --- A. what Chroma would refuse is refused first, with file:line -------------------------


def test_reserved_metadata_keys_are_refused_with_file_line(tmp_path: Path):
    path = _jsonl(
        tmp_path / "keys.jsonl",
        [
            {"id": "a", "title": "A", "metadata": {"ok": 1}},
            {"id": "b", "title": "B", "metadata": {"$and": 1}},
            {"id": "c", "title": "C", "metadata": {"chroma:document": "x"}},
            {"id": "d", "title": "D", "metadata": {"#embedding": 1}},
        ],
    )
    with pytest.raises(CatalogError) as info:
        load_items(path)
    found = {(p.line, p.field) for p in info.value.problems}
    assert found == {
        (2, "metadata.$and"),
        (3, "metadata.chroma:document"),
        (4, "metadata.#embedding"),
    }
    assert f"{path}:2: field 'metadata.$and': metadata key starts with reserved '$'" in str(
        info.value
    )


def test_nan_and_infinity_are_refused_not_dropped(tmp_path: Path):
    path = tmp_path / "nan.jsonl"
    path.write_text(
        '{"id": "a", "title": "A", "metadata": {"x": NaN}}\n'
        '{"id": "b", "title": "B", "metadata": {"x": Infinity}}\n'
        '{"id": "c", "title": "C", "metadata": {"x": -Infinity, "y": 1e400}}\n'
        '{"id": "d", "title": "D", "metadata": {"x": 1.5}}\n'
    )
    problems = _problems(path)
    assert {(line, field) for line, field, _ in problems} == {
        (1, "metadata.x"),
        (2, "metadata.x"),
        (3, "metadata.x"),
        (3, "metadata.y"),
    }
    assert all("NaN and Infinity are not allowed" in reason for _, _, reason in problems)
    # The same rule for Parquet, whose float columns carry NaN for gaps.
    pq.write_table(
        pa.table({"id": ["p1", "p2"], "title": ["P1", "P2"], "score": [0.5, float("nan")]}),
        tmp_path / "nan.parquet",
    )
    assert [(p[0], p[1]) for p in _problems(tmp_path / "nan.parquet")] == [(2, "metadata.score")]


def test_non_scalar_metadata_is_one_clear_problem(tmp_path: Path):
    path = _jsonl(
        tmp_path / "nested.jsonl",
        [
            {"id": "a", "title": "A", "metadata": {"tags": ["x", "y"]}},
            {"id": "b", "title": "B", "metadata": {"more": {"k": 1}}},
            {"id": "c", "title": "C", "metadata": {"gone": None}},
            {"id": "d", "title": "D", "metadata": {"big": 2**64}},
        ],
    )
    assert _problems(path) == [
        (1, "metadata.tags", "must be a string, number or boolean, not list"),
        (2, "metadata.more", "must be a string, number or boolean, not dict"),
        (3, "metadata.gone", "must be a string, number or boolean, not NoneType"),
        (4, "metadata.big", "integer outside the 64-bit range"),
    ]


def test_lone_surrogates_are_refused_before_chroma(tmp_path: Path):
    path = tmp_path / "surrogate.jsonl"
    path.write_text(
        '{"id": "a", "title": "A \\ud800", "metadata": {"k": "v\\udfff"}}\n'
        '{"id": "b", "title": "B", "text": "\\ud83d"}\n'
    )
    assert {(line, field) for line, field, _ in _problems(path)} == {
        (1, "title"),
        (1, "metadata.k"),
        (2, "text"),
    }


def test_bad_row_281_of_300_writes_nothing(tmp_path: Path, catalog_path: Path):
    rec = _rec(tmp_path)
    rec.index(catalog_path)
    rows = [{"id": f"n{i}", "title": f"New {i}", "metadata": {"n": i}} for i in range(1, 301)]
    rows[280]["metadata"] = {"$and": 1}
    bad = _jsonl(tmp_path / "big.jsonl", rows)
    with pytest.raises(CatalogError, match=r"big.jsonl:281: field 'metadata.\$and'"):
        rec.index(bad)
    assert rec.store.count() == 50
    assert _rec(tmp_path).store.count() == 50  # and on disk


def test_upsert_revalidates_items_that_skipped_validation(tmp_path: Path, catalog_path: Path):
    rec = _rec(tmp_path)
    rec.index(catalog_path)
    good = [Item(id=f"n{i}", title=f"New {i}") for i in range(300)]
    # model_construct and model_copy(update=...) skip pydantic; the store checks again.
    good[280] = Item.model_construct(id="n280", title="Bad", text="", metadata={"$and": 1})
    good[290] = good[290].model_copy(update={"metadata": {"x": float("nan")}})
    with pytest.raises(CatalogError) as info:
        rec.index(good)
    assert {(p.line, p.field) for p in info.value.problems} == {
        (281, "metadata.$and"),
        (291, "metadata.x"),
    }
    assert rec.store.count() == 50


class _BreaksOnSecondBatch(FakeEmbedder):
    """Gives vectors of the wrong size from the second call on: Chroma itself refuses them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        vecs = super().embed(texts)
        return vecs if self.calls == 1 else [v[:32] for v in vecs]


def test_upsert_rolls_back_when_chroma_fails_midway(tmp_path: Path, catalog_path: Path):
    rec = _rec(tmp_path)
    rec.index(catalog_path)
    before = rec.store.get(["m1", "m2"])
    vec_before = rec.store.embeddings(["m1"])["m1"]
    # 300 items: m1..m50 replaced with new text, n1..n250 new; batch 1 (256) is written,
    # batch 2 fails inside Chroma (wrong dimension).
    changed = [it.model_copy(update={"text": "Changed."}) for it in load_items(catalog_path)]
    items = changed + [Item(id=f"n{i}", title=f"New {i}") for i in range(1, 251)]
    rec.store.embedder = _BreaksOnSecondBatch()
    with pytest.raises(StoreError) as info:
        rec.index(items)
    message = str(info.value)
    assert (
        "\n" not in message and "rolled back the 206 added and 50 replaced rows it wrote" in message
    )
    assert "dimension" in message.lower()
    assert rec.store.count() == 50
    assert rec.store.get(["m1", "m2"]) == before
    assert rec.store.embeddings(["m1"])["m1"] == pytest.approx(vec_before)
    assert rec.store.get([f"n{i}" for i in range(1, 251)]) == {}
    # And the same file with a working embedder completes.
    rec.store.embedder = FakeEmbedder()
    report = rec.index(items)
    assert (report.added, report.updated) == (250, 50) and rec.store.count() == 300


# --- B. input errors -----------------------------------------------------------------------


def test_invalid_utf8_is_reported_per_line_not_a_traceback(tmp_path: Path):
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(
        b'{"id": "a", "title": "A"}\n'
        b'{"id": "b", "title": "Caf\xe9"}\n'
        b'{"id": "c", "title": "C"}\n'
        b'{"id": "d", "title": "\xff\xfe"}\n'
    )
    problems = _problems(jsonl)
    assert [(line, field) for line, field, _ in problems] == [(2, "<encoding>"), (4, "<encoding>")]
    assert "byte(s) e9 at byte 26" in problems[0][2]
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"id,title\nx1,Caf\xe9\nx2,Fine\nx3,Na\xefve\n")
    assert [(p[0], p[1]) for p in _problems(csv_path)] == [(2, "<encoding>"), (4, "<encoding>")]


def test_utf16_file_is_named_as_such(tmp_path: Path):
    path = tmp_path / "excel.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + "id,title\nx1,One\n".encode("utf-16-le"))
    [(line, field, reason)] = _problems(path)
    assert (line, field) == (1, "<encoding>") and "UTF-16" in reason


def test_csv_parse_errors_are_file_line(tmp_path: Path):
    path = tmp_path / "huge_field.csv"
    path.write_text('id,title\nx1,One\nx2,"' + "x" * 200_000 + '"\nx3,Three\nx4,Four,extra\n')
    problems = _problems(path)
    assert [(line, field) for line, field, _ in problems] == [(3, "<csv>"), (5, "<row>")]
    assert "field larger than field limit" in problems[0][2]


def test_jsonl_reports_every_bad_line(tmp_path: Path):
    path = tmp_path / "many.jsonl"
    path.write_text(
        '{"id": "a", "title": "A"}\n'
        '{"id": "b", "title": \n'
        '["not", "an", "object"]\n'
        '{"id": "d", "title": ""}\n'
        "{oops}\n"
        '{"id": "f", "title": "F"}\n' + "[" * 100_000 + "\n"
    )
    problems = _problems(path)
    assert [(line, field) for line, field, _ in problems] == [
        (2, "<json>"),
        (3, "<row>"),
        (4, "title"),
        (5, "<json>"),
        (7, "<json>"),
    ]
    assert problems[-1][2] == "invalid JSON: nested too deeply"


def test_csv_with_utf8_bom_is_accepted(tmp_path: Path):
    path = tmp_path / "excel.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"id,title,year\r\nx1,One,2001\r\nx2,Two,2002\r\n")
    items = load_items(path)
    assert [(it.id, it.title, it.metadata) for it in items] == [
        ("x1", "One", {"year": "2001"}),
        ("x2", "Two", {"year": "2002"}),
    ]


def test_long_values_are_shortened_in_errors(tmp_path: Path):
    huge = "x" * 5_000_000
    path = _jsonl(tmp_path / "huge.jsonl", [{"id": "a", "title": huge}, {"id": huge}])
    with pytest.raises(CatalogError) as info:
        load_items(path)
    message = str(info.value)
    assert len(message) < 1000
    assert "…', 5000000 chars)" in message
    bad_json = tmp_path / "huge_bad.jsonl"
    bad_json.write_text('{"id": "a", "title": "' + huge + "\n")
    with pytest.raises(CatalogError) as info:
        load_items(bad_json)
    assert len(str(info.value)) < 1000 and "5000022 chars" in str(info.value)


def test_parquet_float_ids(tmp_path: Path):
    pq.write_table(
        pa.table({"id": [1.0, 2.0, 30.0], "title": ["One", "Two", "Thirty"]}),
        tmp_path / "whole.parquet",
    )
    assert [it.id for it in load_items(tmp_path / "whole.parquet")] == ["1", "2", "30"]
    pq.write_table(
        pa.table({"id": [1.0, 1.5, float("nan")], "title": ["One", "Half", "Gap"]}),
        tmp_path / "frac.parquet",
    )
    problems = _problems(tmp_path / "frac.parquet")
    assert [(line, field) for line, field, _ in problems] == [(2, "id"), (3, "id")]
    assert problems[0][2] == "a float id must be a whole number"
    # Nested layout (id, title, metadata struct) follows the same rule.
    pq.write_table(
        pa.table({"id": [7.0], "title": ["Seven"], "metadata": [{"year": 2001}]}),
        tmp_path / "nested.parquet",
    )
    assert load_items(tmp_path / "nested.parquet")[0].id == "7"


def test_unreadable_parquet_is_a_file_error(tmp_path: Path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    [(line, field, reason)] = _problems(path)
    assert (line, field) == (0, "<file>") and reason.startswith("not a readable Parquet file")


def test_interactions_get_the_same_treatment(tmp_path: Path):
    bom = tmp_path / "ratings.csv"
    bom.write_bytes(codecs.BOM_UTF8 + b"user_id,item_id,timestamp,rating\nu1,m1,1,5\nu1,m2,2,4\n")
    assert [(r.user_id, r.item_id) for r in read_interactions(bom)] == [("u1", "m1"), ("u1", "m2")]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"user_id,item_id,rating\nu1,m1,5\nu\xe9,m2,4\nu3,m3,nan\nu4,,1\n")
    with pytest.raises(CatalogError) as info:
        read_interactions(bad)
    assert [(p.line, p.field) for p in info.value.problems] == [
        (3, "<encoding>"),
        (4, "timestamp/rating"),
        (5, "item_id"),
    ]
    jsonl = tmp_path / "inter.jsonl"
    jsonl.write_bytes(
        b'{"user_id": "u1", "item_id": "m1"}\n'
        b"[1, 2]\n"
        b'{"user_id": "u\xff", "item_id": "m2"}\n'
        b"{broken\n"
    )
    with pytest.raises(CatalogError) as info:
        read_interactions(jsonl)
    assert [(p.line, p.field) for p in info.value.problems] == [
        (2, "<row>"),
        (3, "<encoding>"),
        (4, "<json>"),
    ]
