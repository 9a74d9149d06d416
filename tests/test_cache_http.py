"""The per-user cache behind the HTTP service (an in-memory cache): trace.cache says hit,
miss or bypass; a hit is the answer the uncached service gives; feedback, forgetting a user
and writing items drop entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_http import make_service

from genre_agent.http import create_app
from genre_agent.http.service import Service
from genre_agent.storage.cache import MemoryCache


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, MemoryCache]]:
    """A service with the cache and one without, over the same stores."""
    plain = make_service(tmp_path)
    cache = MemoryCache()
    cached = Service(plain.config, plain.rec, cache=cache)
    with TestClient(create_app(service=cached)) as c, TestClient(create_app(service=plain)) as p:
        yield c, p, cache


def _items(body: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(it["item"]["id"], it["score"], it["evidence"]) for it in body["items"]]


ASKS: list[dict[str, Any]] = [
    {"k": 5},
    {"k": 3, "where": '{"year": {"$gte": 1990}}'},
    {"k": 4, "where": '{"genre_comedy": true}'},
]


def test_get_recommend_is_a_miss_then_a_hit_equal_to_the_uncached_answer(pair) -> None:
    c, p, _ = pair
    for user in ("c0", "c1", "h0", "big"):
        for ask in ASKS:
            params = {**ask, "explain": "false"}
            uncached = p.get(f"/v1/recommend/{user}", params=params).json()
            first = c.get(f"/v1/recommend/{user}", params=params).json()
            second = c.get(f"/v1/recommend/{user}", params=params).json()
            assert uncached["trace"]["cache"] is None
            assert (first["trace"]["cache"], second["trace"]["cache"]) == ("miss", "hit")
            assert _items(first) == _items(second) == _items(uncached), (user, ask)


def test_post_recommend_with_exclusions_reads_the_cache(pair) -> None:
    c, p, _ = pair
    body = {"user_id": "c2", "k": 4, "exclude": ["m13", "m9"], "explain": False}
    uncached = p.post("/v1/recommend", json=body).json()
    assert c.post("/v1/recommend", json=body).json()["trace"]["cache"] == "miss"
    hit = c.post("/v1/recommend", json=body).json()
    assert hit["trace"]["cache"] == "hit" and _items(hit) == _items(uncached)
    with_query = c.post("/v1/recommend", json={**body, "query": "space"}).json()
    assert with_query["trace"]["cache"] == "bypass"


def test_an_explained_answer_with_the_llm_bypasses(pair) -> None:
    c, _, cache = pair
    got = c.get("/v1/recommend/c0", params={"k": 3, "explain": "true"}).json()
    assert got["trace"]["cache"] == "bypass" and cache.puts == 0


def test_feedback_and_forgetting_drop_the_users_entries(pair) -> None:
    c, _, cache = pair
    c.get("/v1/recommend/c3", params={"k": 3})
    c.get("/v1/recommend/c4", params={"k": 3})
    assert cache.users() == ["c3", "c4"]
    event = {"event_id": "x1", "user_id": "c3", "item_id": "m30", "type": "like"}
    assert c.post("/v1/feedback", json={"events": [event]}).status_code == 200
    assert cache.users() == ["c4"]
    assert c.get("/v1/recommend/c3", params={"k": 3}).json()["trace"]["cache"] == "miss"
    assert c.delete("/v1/users/c4").status_code == 200
    assert cache.users() == ["c3"]


def test_writing_items_clears_the_cache(pair) -> None:
    c, _, cache = pair
    c.get("/v1/recommend/c0", params={"k": 3})
    assert cache.users() == ["c0"]
    assert c.delete("/v1/items/m40").status_code == 200
    assert cache.users() == []


def test_a_cache_that_does_not_answer_is_a_503_naming_it_without_the_password(
    tmp_path: Path,
) -> None:
    from servers import free_port

    from genre_agent.storage.cache import CacheError, RedisCache

    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    plain = make_service(tmp_path)
    down = RedisCache.from_url(url, ttl_s=60)
    with pytest.raises(CacheError, match="failed"):
        down.get("u", "k")
    with TestClient(create_app(service=Service(plain.config, plain.rec, cache=down))) as c:
        res = c.get("/v1/recommend/c0", params={"k": 3})
        assert res.status_code == 503, res.text
        assert "127.0.0.1" in res.text and "hunter2" not in res.text
        event = {"event_id": "z1", "user_id": "c0", "item_id": "m1", "type": "view"}
        assert c.post("/v1/feedback", json={"events": [event]}).status_code == 503
