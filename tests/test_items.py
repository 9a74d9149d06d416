import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genre_agent.catalog.items import Item, load_items, load_movielens_items
from genre_agent.errors import CatalogError


def test_jsonl_fixture_loads(catalog_path: Path):
    items = load_items(catalog_path)
    assert len(items) == 50 and items[0].id == "m1" and items[0].metadata["year"] == 1979


def test_every_bad_row_is_reported_with_file_line_field(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    rows = [
        {"id": "ok1", "title": "Fine"},
        {"id": "bad id", "title": "Spaces in id"},
        {"id": "ok2", "title": ""},
        {"id": "ok1", "title": "Duplicate"},
        {"id": "ok3", "title": "Meta", "metadata": {"x": [1, 2]}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(CatalogError) as info:
        load_items(path)
    found = {(p.line, p.field) for p in info.value.problems}
    assert (2, "id") in found and (3, "title") in found and (4, "id") in found
    assert any(p.line == 5 and p.field.startswith("metadata") for p in info.value.problems)
    assert f"{path}:2: field 'id'" in str(info.value)


def test_invalid_json_line(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "a", "title": "A"}\n{"id": "b", "title": \n')
    with pytest.raises(CatalogError, match=r"broken.jsonl:2: field '<json>'"):
        load_items(path)


def test_csv_and_parquet(tmp_path: Path):
    path = tmp_path / "items.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "text", "year"])
        w.writerow(["c1", "Csv One", "text", "2001"])
        w.writerow(["c2", "", "missing title", "2002"])
    with pytest.raises(CatalogError, match=r"items.csv:3: field 'title'"):
        load_items(path)
    table = pa.table(
        {"id": ["p1", "p2"], "title": ["P one", "P two"], "text": ["a", "b"], "year": [1, 2]}
    )
    pq.write_table(table, tmp_path / "items.parquet")
    items = load_items(tmp_path / "items.parquet")
    assert [i.id for i in items] == ["p1", "p2"] and items[1].metadata["year"] == 2


def test_movielens_loader(tmp_path: Path):
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,"Heat, The (1995)",Action\n'
    )
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,Pixar,2\n")
    items = load_movielens_items(tmp_path)
    assert items[0].metadata == {
        "genres": "Adventure|Animation",
        "year": 1995,
        "genre_adventure": True,
        "genre_animation": True,
    }
    assert "Tags: pixar." in items[0].text and items[1].title == "Heat, The (1995)"


def test_item_document_contains_title_and_text():
    assert Item(id="x", title="T", text="body").document() == "T. body"
