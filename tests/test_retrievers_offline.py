"""Popularity, BM25, item-kNN and fusion retrievers: registry, exclusions, ordering."""

from __future__ import annotations

from genre_agent.catalog.items import Item
from genre_agent.storage.interactions import Interaction
from retrievers import (
    BM25Retriever,
    FusionRetriever,
    ItemKNNRetriever,
    PopularityRetriever,
    RetrievalQuery,
)

ITEMS = {
    "1": Item(id="1", title="Alien", text="Genres: Sci-Fi, Horror. Tags: space, monster."),
    "2": Item(id="2", title="Aliens", text="Genres: Sci-Fi, Action. Tags: space, marines."),
    "3": Item(id="3", title="Notting Hill", text="Genres: Romance, Comedy. Tags: london."),
    "4": Item(id="4", title="Love Actually", text="Genres: Romance, Comedy. Tags: christmas."),
    "5": Item(id="5", title="Solaris", text="Genres: Sci-Fi, Drama. Tags: space, ocean."),
}
ROWS = [
    Interaction(u, i)
    for u, items in {"a": "125", "b": "12", "c": "34", "d": "34", "e": "3", "f": "15"}.items()
    for i in items
]


def test_every_source_kind_has_a_builder() -> None:
    from typing import get_args

    from genre_agent.config import SourceKind
    from genre_agent.service.sources import SOURCES

    assert set(SOURCES) == set(get_args(SourceKind))


def test_popularity_orders_by_count_and_excludes_history() -> None:
    r = PopularityRetriever.from_interactions(ITEMS, ROWS)
    assert [c.item.id for c in r.search(RetrievalQuery(), 5)] == ["1", "3", "2", "4", "5"]
    q = RetrievalQuery(history=(ITEMS["1"],), exclude_ids=frozenset({"3"}))
    assert [c.item.id for c in r.search(q, 2)] == ["2", "4"]


def test_bm25_prefers_textual_matches() -> None:
    r = BM25Retriever(ITEMS)
    hits = r.search(RetrievalQuery(history=(ITEMS["3"],)), 2)
    assert hits[0].item.id == "4" and hits[0].score > 0
    scores = r.score(RetrievalQuery(history=(ITEMS["1"],)), ["2", "3", "5"])
    assert scores[0] > scores[1] and scores[2] > scores[1]
    assert r.search(RetrievalQuery(text="space ocean"), 1)[0].item.id == "5"


def test_itemknn_uses_co_occurrence() -> None:
    r = ItemKNNRetriever.fit(ITEMS, ROWS)
    hits = [c.item.id for c in r.search(RetrievalQuery(history=(ITEMS["3"],)), 5)]
    assert hits == ["4"]  # items that never co-occur have no evidence
    s = r.score(RetrievalQuery(history=(ITEMS["1"],)), ["2", "4"])
    assert s[0] > 0 and s[1] == 0.0


def test_fusion_is_weighted_rrf() -> None:
    pop = PopularityRetriever.from_interactions(ITEMS, ROWS)
    knn = ItemKNNRetriever.fit(ITEMS, ROWS)
    only_pop = FusionRetriever([pop, knn], [1.0, 0.0])
    q = RetrievalQuery(history=(ITEMS["3"],))
    assert [c.item.id for c in only_pop.search(q, 3)] == [c.item.id for c in pop.search(q, 3)]
    both = FusionRetriever([pop, knn])
    got = both.search(q, 4)
    # pop (history 3 excluded): 1, 2, 4, 5; knn: only 4 has evidence.
    assert [c.item.id for c in got] == ["4", "1", "2", "5"] and got[0].source == "fusion"
    assert got[0].score == 1 / 63 + 1 / 61
    # On a candidate set: pop ranks 1 then 4, knn ranks 4 then 1; the weights decide.
    s = FusionRetriever([pop, knn], [0.5, 1.0]).score(
        RetrievalQuery(history=(ITEMS["3"],)), ["1", "4"]
    )
    assert s == [0.5 / 61 + 1 / 62, 0.5 / 62 + 1 / 61]


def test_every_source_honours_an_allowed_set_and_exclusions() -> None:
    from retrievers import RandomRetriever

    allowed = frozenset({"2", "4", "5"})
    q = RetrievalQuery(history=(ITEMS["1"],), allowed_ids=allowed, exclude_ids=frozenset({"4"}))
    for r in (
        PopularityRetriever.from_interactions(ITEMS, ROWS),
        BM25Retriever(ITEMS),
        ItemKNNRetriever.fit(ITEMS, ROWS),
        RandomRetriever(ITEMS),
    ):
        got = {c.item.id for c in r.search(q, 5)}
        assert got <= {"2", "5"}, (r.name, got)


def test_itemknn_saves_and_loads_the_same_model(tmp_path) -> None:
    r = ItemKNNRetriever.fit(ITEMS, ROWS)
    r.save(tmp_path / "m")
    back = ItemKNNRetriever.load(tmp_path / "m", ITEMS)
    q = RetrievalQuery(history=(ITEMS["1"],))
    assert back.score(q, list(ITEMS)) == r.score(q, list(ITEMS))


def test_random_is_seeded_per_user() -> None:
    from retrievers import RandomRetriever

    r = RandomRetriever(ITEMS, seed=3)
    a = r.score(RetrievalQuery(user_id="u1"), list(ITEMS))
    assert a == r.score(RetrievalQuery(user_id="u1"), list(ITEMS))
    others = [r.score(RetrievalQuery(user_id=f"u{n}"), list(ITEMS)) for n in range(2, 8)]
    assert any(o != a for o in others)
