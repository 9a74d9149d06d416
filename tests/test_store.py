import json
from pathlib import Path

import pytest

from genre_agent import Item, Recommender
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.errors import CatalogError


def _rec(path: Path) -> Recommender:
    return Recommender.from_config(
        {
            "store": {
                "kind": "embedded",
                "path": str(path / "chroma"),
                "interactions_path": str(path / "i.sqlite"),
            },
            "llm": {"engine": "fake"},
            "retrieval": {"sources": {"embedding": 1.0}},
        },
        embedder=FakeEmbedder(),
    )


def test_upsert_is_idempotent_and_updates_changed(tmp_path: Path, catalog_path: Path):
    rec = _rec(tmp_path)
    first = rec.index(catalog_path)
    assert (first.added, first.updated, first.unchanged) == (50, 0, 0)
    again = rec.index(catalog_path)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 50)
    changed = Item(id="m1", title="Alien (1979)", text="Director's cut.", metadata={"year": 1979})
    report = rec.index([changed])
    assert (report.added, report.updated) == (0, 1)
    assert rec.store.get(["m1"])["m1"].text == "Director's cut."
    assert rec.store.count() == 50


def test_bad_catalog_keeps_previous_index(tmp_path: Path, catalog_path: Path):
    rec = _rec(tmp_path)
    rec.index(catalog_path)
    before = [r.item.id for r in rec.recommend(history=["m1"], k=5).items]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"id": "m1", "title": "Replaced"}) + "\n" + json.dumps({"id": "n2"}) + "\n"
    )
    with pytest.raises(CatalogError, match=r"bad.jsonl:2: field 'title'"):
        rec.index(bad)
    assert rec.store.count() == 50
    assert rec.store.get(["m1"])["m1"].title == "Alien (1979)"
    # Reopen from disk: the persisted index still answers the same.
    rec2 = _rec(tmp_path)
    assert [r.item.id for r in rec2.recommend(history=["m1"], k=5).items] == before


def test_where_filter_and_history_exclusion(fake_rec):
    result = fake_rec.recommend(
        history=["m1", "m2"],
        k=5,
        filters={"$and": [{"year": {"$gte": 2000}}, {"genre_comedy": True}]},
    )
    ids = [r.item.id for r in result.items]
    assert "m1" not in ids and "m2" not in ids and len(ids) == 5
    for r in result.items:
        assert r.item.metadata["year"] >= 2000 and r.item.metadata["genre_comedy"] is True


def test_forgotten_items_lose_their_influence(tmp_path: Path, catalog_path: Path):
    from genre_agent.llm import FakeLLM
    from genre_agent.service.profiles import ProfileStore
    from genre_agent.storage.interactions import Interaction

    llm = FakeLLM("first")
    rec = Recommender.from_config(
        {
            "store": {"kind": "memory", "collection": "forget_test"},
            "profile": {"path": str(tmp_path / "profiles.sqlite")},
            "llm": {"engine": "fake"},
            "retrieval": {"sources": {"embedding": 1.0}},
        },
        llm=llm,
        embedder=FakeEmbedder(),
    )
    rec.index(catalog_path)
    rec.add_interactions([Interaction("u", "m1", 1, 5.0), Interaction("u", "m21", 2, 5.0)])
    rec.recommend(user_id="u", k=3)
    assert "Alien (1979)" in llm.requests[0].messages[1].content
    ProfileStore(tmp_path / "profiles.sqlite").forget("u", "m1")
    llm.requests.clear()
    result = rec.recommend(user_id="u", k=3)
    prompt = llm.requests[0].messages[1].content
    assert "Alien (1979)" not in prompt and "Toy Story (1995)" in prompt
    assert "m1" not in {r.item.id for r in result.items}  # still excluded from results
