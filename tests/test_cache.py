"""The per-user recommendation cache (service/cached.py) over the in-memory cache: a cached
answer is the uncached one, the user's feedback and a refit make the next one a miss, and
what cannot be cached says "bypass"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genre_agent.config import load_config
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.llm import FakeLLM
from genre_agent.service.cached import CachedAnswers
from genre_agent.service.feedback import FeedbackEvent, record_feedback
from genre_agent.service.fit import fit_source
from genre_agent.service.recommender import Recommender
from genre_agent.storage.cache import MemoryCache, NoCache, open_cache
from genre_agent.storage.chroma import ChromaStore, make_client
from genre_agent.storage.interactions import Interaction, InteractionStore
from genre_agent.types import Recommendation

USERS = ["u0", "u1", "u2", "u7"]
# (k, filters, exclude) of the requests compared: defaults, a shorter and a longer k, a
# metadata filter, an exclusion, both.
ASKS: list[tuple[int | None, dict[str, Any] | None, tuple[str, ...]]] = [
    (None, None, ()),
    (3, None, ()),
    (12, None, ()),
    (5, {"year": {"$gte": 1990}}, ()),
    (4, None, ("m3", "m7")),
    (4, {"genre_comedy": True}, ("m5",)),
]


def make_rec(tmp_path: Path, catalog_path: Path, **extra: Any) -> Recommender:
    cfg = load_config(
        None,
        overrides={
            "store.kind": "memory",
            "store.collection": f"ca{tmp_path.name[-20:]}",
            "store.models_path": str(tmp_path / "models"),
            "profile.path": str(tmp_path / "p.sqlite"),
            "llm.engine": "fake",
            "ranking.mode": "retrieval",
            "ranking.rationale_top_r": 0,
            "retrieval.sources": {"itemknn": 1.0, "popularity": 0.3, "embedding": 0.5},
            **extra,
        },
        use_env=False,
    )
    store = ChromaStore(make_client(cfg.store), cfg.store.collection, FakeEmbedder())
    rec = Recommender(cfg, store, InteractionStore(":memory:"), llm=FakeLLM("first"))
    rec.index(catalog_path)
    ids = sorted(rec.sources.catalog())
    rows = [
        Interaction(f"u{n}", ids[(n * 3 + m) % 40], float(m), 5.0)
        for n in range(12)
        for m in range(4)
    ]
    rec.interactions.add(rows)
    fit_source(rec.config, "itemknn", rec.sources.catalog(), rec.interactions)
    return rec


def same(a: Recommendation, b: Recommendation) -> None:
    """The same answer: ids, order, ranks, scores, evidence and notes."""
    assert [it.model_dump() for it in a.items] == [it.model_dump() for it in b.items]
    assert a.trace.notes == b.trace.notes
    assert a.trace.sources == b.trace.sources and a.trace.strategy == b.trace.strategy


@pytest.fixture()
def rec(tmp_path: Path, catalog_path: Path):
    r = make_rec(tmp_path, catalog_path)
    yield r
    r.close()


def test_the_cached_answer_is_the_uncached_one(rec: Recommender) -> None:
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=20)
    for user in USERS:
        for k, filters, exclude in ASKS:
            ask = dict(user_id=user, k=k, filters=filters, exclude=exclude)
            plain = rec.recommend(**ask)  # type: ignore[arg-type]
            assert plain.trace.cache is None
            first = cached.recommend(**ask)  # type: ignore[arg-type]
            second = cached.recommend(**ask)  # type: ignore[arg-type]
            same(first, plain)
            same(second, plain)
            assert len(plain.items) == (k or rec.config.ranking.k)
            assert second.trace.cache == "hit", (user, k, filters, exclude)
    # One entry per (user, filters, exclusions); k reads the same one.
    assert cache.users() == sorted(USERS)


def test_the_first_request_is_a_miss_and_fills_the_cache(rec: Recommender) -> None:
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=20)
    assert cached.recommend(user_id="u1", k=3).trace.cache == "miss"
    assert cached.recommend(user_id="u1", k=3).trace.cache == "hit"
    assert cached.recommend(user_id="u1", k=20).trace.cache == "hit"  # top_n kept
    assert cached.recommend(user_id="u1", k=25).trace.cache == "miss"  # more than kept
    assert cached.recommend(user_id="u1", k=25).trace.cache == "hit"
    hit = cached.recommend(user_id="u1", k=3)
    assert [t.stage for t in hit.trace.timings] == ["cache"]


def test_feedback_deletes_the_users_entries_at_once(rec: Recommender) -> None:
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=20)
    before = cached.recommend(user_id="u2", k=5)
    cached.recommend(user_id="u3", k=5)
    top = before.items[0].item.id
    event = FeedbackEvent(event_id="e1", user_id="u2", item_id=top, type="like")
    record_feedback(rec.interactions, [event], cache)
    after = cached.recommend(user_id="u2", k=5)
    assert after.trace.cache == "miss"
    assert top not in [it.item.id for it in after.items]  # now in the history
    same(after, rec.recommend(user_id="u2", k=5))
    assert cached.recommend(user_id="u3", k=5).trace.cache == "hit"  # another user's stays


def test_a_refit_makes_the_old_entries_unreachable(rec: Recommender) -> None:
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=20)
    cached.recommend(user_id="u0", k=5)
    assert cached.recommend(user_id="u0", k=5).trace.cache == "hit"
    ids = sorted(rec.sources.catalog())
    rec.interactions.add([Interaction(f"n{m}", ids[m], 9.0, 5.0) for m in range(10)])
    fit_source(rec.config, "itemknn", rec.sources.catalog(), rec.interactions)
    refreshed = cached.recommend(user_id="u0", k=5)
    assert refreshed.trace.cache == "miss"
    same(refreshed, rec.recommend(user_id="u0", k=5))


def test_a_short_cached_list_falls_back_with_a_note(rec: Recommender) -> None:
    cached = CachedAnswers(rec, MemoryCache(), top_n=20)
    rare = {"year": {"$gte": 2010}}
    few = rec.recommend(user_id="u4", k=30, filters=rare)
    assert 0 < len(few.items) < 30
    k_small = max(1, len(few.items) - 1)
    assert cached.recommend(user_id="u4", k=k_small, filters=rare).trace.cache == "miss"
    assert cached.recommend(user_id="u4", k=k_small, filters=rare).trace.cache == "hit"
    got = cached.recommend(user_id="u4", k=30, filters=rare)
    assert got.trace.cache == "miss"
    assert any(n.startswith("cache: the cached list has") for n in got.trace.notes)
    assert [it.model_dump() for it in got.items] == [it.model_dump() for it in few.items]
    assert set(few.trace.notes) < set(got.trace.notes)  # its own shortfall note, and ours


def test_what_cannot_be_cached_bypasses(rec: Recommender) -> None:
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=20)
    assert cached.recommend(user_id="u0", query="space").trace.cache == "bypass"
    assert cached.recommend(history=["m1", "m2"]).trace.cache == "bypass"
    assert cached.recommend(user_id="u0", history=["m1"]).trace.cache == "bypass"
    assert cache.puts == 0


def test_an_llm_config_bypasses(tmp_path: Path, catalog_path: Path) -> None:
    rec = make_rec(tmp_path, catalog_path, **{"ranking.rationale_top_r": 2})
    cache = MemoryCache()
    got = CachedAnswers(rec, cache, top_n=20).recommend(user_id="u0", k=3)
    assert got.trace.cache == "bypass" and cache.puts == 0
    rec.close()


def test_the_cache_off_leaves_the_trace_alone(rec: Recommender) -> None:
    got = CachedAnswers(rec, NoCache(), top_n=20).recommend(user_id="u0", k=3)
    assert got.trace.cache is None
    assert isinstance(open_cache(rec.config), NoCache)


def test_entries_expire(rec: Recommender) -> None:
    now = [0.0]
    cached = CachedAnswers(rec, MemoryCache(ttl_s=10, clock=lambda: now[0]), top_n=20)
    cached.recommend(user_id="u0", k=3)
    now[0] = 9.0
    assert cached.recommend(user_id="u0", k=3).trace.cache == "hit"
    now[0] = 20.0
    assert cached.recommend(user_id="u0", k=3).trace.cache == "miss"


def test_an_answer_from_a_model_being_reloaded_is_not_stored(rec: Recommender) -> None:
    """Another process publishes a new item-kNN. While this process still serves the old
    one (another request is loading the new), answers are not stored under the new
    versions' key: they would outlive the refit."""
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=20)
    cached.recommend(user_id="u5", k=5)
    assert cache.puts == 1
    ids = sorted(rec.sources.catalog())
    rec.interactions.add([Interaction(f"o{m}", ids[m], 9.0, 5.0) for m in range(10)])
    fit_source(rec.config, "itemknn", rec.sources.catalog(), rec.interactions)  # elsewhere
    rec.sources._loading.add("itemknn")  # another request is loading the new version
    old_model = cached.recommend(user_id="u5", k=5)
    assert old_model.trace.cache == "miss" and cache.puts == 1  # computed, not stored
    rec.sources._loading.discard("itemknn")
    assert cached.recommend(user_id="u5", k=5).trace.cache == "miss"  # loads it: not stored
    assert cache.puts == 1
    assert cached.recommend(user_id="u5", k=5).trace.cache == "miss" and cache.puts == 2
    hit = cached.recommend(user_id="u5", k=5)
    assert hit.trace.cache == "hit"
    same(hit, rec.recommend(user_id="u5", k=5))


def test_a_cold_user_is_not_stored(rec: Recommender) -> None:
    """Made-up user ids get the popularity answer, and add nothing to the cache."""
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=20)
    for n in range(3):
        got = cached.recommend(user_id=f"nobody-{n}", k=4)
        assert got.trace.cache == "bypass" and got.trace.strategy == "popular"
        same(got, rec.recommend(user_id=f"nobody-{n}", k=4))
    assert cache.puts == 0 and cache.users() == []


def test_an_entry_naming_an_item_that_left_the_catalog_is_a_miss(rec: Recommender) -> None:
    """Entries keep item ids; the items come from the catalog when read."""
    cached = CachedAnswers(rec, MemoryCache(), top_n=20)
    first = cached.recommend(user_id="u6", k=5)
    assert cached.recommend(user_id="u6", k=5).trace.cache == "hit"
    gone = first.items[1].item.id
    rec.delete_items([gone])  # another door: the cache is not told
    after = cached.recommend(user_id="u6", k=5)
    assert after.trace.cache == "miss" and gone not in [it.item.id for it in after.items]
    same(after, rec.recommend(user_id="u6", k=5))


def test_the_key_names_the_config_that_shapes_the_answer_only(rec: Recommender) -> None:
    """`genre worker --every 60` on another port warms what `genre serve` reads; another
    ranking config reads none of it."""
    from genre_agent.config import load_config

    def twin(**overrides: Any) -> CachedAnswers:
        cfg = load_config(rec.config, overrides=overrides, use_env=False)
        other = Recommender(cfg, rec.store, rec.interactions, sources=rec.sources)
        return CachedAnswers(other, MemoryCache(), top_n=20)

    key = CachedAnswers(rec, MemoryCache(), top_n=20).key(None, ())
    assert twin(**{"fit.every_s": 60.0, "service.port": 9001}).key(None, ()) == key
    assert twin(**{"retrieval.n_candidates": 30}).key(None, ()) != key
    assert twin(**{"cold.min_history": 3}).key(None, ()) != key
    assert CachedAnswers(rec, MemoryCache(), 20).key({"year": 1}, ()) != key
    assert CachedAnswers(rec, MemoryCache(), 20).key(None, ("m1", "m2")) == CachedAnswers(
        rec, MemoryCache(), 20
    ).key(None, ("m2", "m1", "m1"))
