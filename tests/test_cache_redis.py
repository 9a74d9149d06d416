"""The per-user cache on a real redis-server (started on a free loopback port): the first
request is a miss, the next a hit equal to the uncached answer for several users and
filters; two services (two workers) share the entries; feedback deletes them; a refit (a
new provenance) makes the next answer a miss; entries expire."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from servers import redis_server
from test_cache_http import ASKS, _items
from test_http import make_service
from test_pipeline import ROWS

from genre_agent.http import create_app
from genre_agent.http.service import Service
from genre_agent.storage.cache import RedisCache, open_cache

redis = pytest.importorskip("redis")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server is not installed (scripts/install-servers.sh installs it)",
    ),
]


@pytest.fixture()
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path / "redis") as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture()
def services(tmp_path: Path, redis_url: str) -> Iterator[tuple[Any, Any, Any, Service]]:
    """Two services reading one Redis (two workers), and one without a cache."""
    plain = make_service(tmp_path)
    cfg = plain.config.model_copy(
        update={"service": plain.config.service.model_copy(update={"cache_url": redis_url})}
    )
    a, b = Service(cfg, plain.rec), Service(cfg, plain.rec)
    assert isinstance(a.cache, RedisCache) and a.cache is not b.cache
    with (
        TestClient(create_app(service=a)) as ca,
        TestClient(create_app(service=b)) as cb,
        TestClient(create_app(service=plain)) as cp,
    ):
        yield ca, cb, cp, a


def _get(client: TestClient, user: str, ask: dict[str, Any]) -> dict[str, Any]:
    res = client.get(f"/v1/recommend/{user}", params={**ask, "explain": "false"})
    assert res.status_code == 200, res.text
    return res.json()


def test_miss_then_hit_equal_to_the_uncached_answer_across_workers(services) -> None:
    ca, cb, cp, a = services
    users = sorted({r.user_id for r in ROWS})
    for user in users:
        for ask in ASKS:
            uncached = _get(cp, user, ask)
            first, second = _get(ca, user, ask), _get(cb, user, ask)
            assert (first["trace"]["cache"], second["trace"]["cache"]) == ("miss", "hit")
            assert _items(first) == _items(second) == _items(uncached), (user, ask)
            assert len(first["items"]) == len(uncached["items"]) == ask["k"]
    client = a.cache.client
    keys = sorted(k.decode() for k in client.scan_iter(match="genre:rec:*"))
    assert keys == [f"genre:rec:{u}" for u in users]
    assert client.hlen("genre:rec:c0") == len(ASKS)  # one field per filter
    assert 0 < client.ttl("genre:rec:c0") <= a.config.service.cache_ttl_s


def test_feedback_through_one_worker_drops_the_entries_the_other_reads(services) -> None:
    ca, cb, cp, _ = services
    ask = {"k": 4}
    _get(ca, "c1", ask)
    _get(ca, "c2", ask)
    assert _get(cb, "c1", ask)["trace"]["cache"] == "hit"
    top = _get(cb, "c1", ask)["items"][0]["item"]["id"]
    event = {"event_id": "r1", "user_id": "c1", "item_id": top, "type": "like"}
    assert cb.post("/v1/feedback", json={"events": [event]}).status_code == 200
    after = _get(ca, "c1", ask)
    assert after["trace"]["cache"] == "miss"
    assert top not in [it["item"]["id"] for it in after["items"]]
    assert _items(after) == _items(_get(cp, "c1", ask))
    assert _get(ca, "c2", ask)["trace"]["cache"] == "hit"  # another user's entry stays


def test_a_new_provenance_is_a_miss(services) -> None:
    ca, cb, cp, a = services
    ask = {"k": 5}
    _get(ca, "h0", ask)
    assert _get(cb, "h0", ask)["trace"]["cache"] == "hit"
    a.rec.fit(["itemknn"])  # `genre fit` (or `genre worker`) publishes a new version
    refreshed = _get(cb, "h0", ask)
    assert refreshed["trace"]["cache"] == "miss"
    assert _items(refreshed) == _items(_get(cp, "h0", ask))
    assert _get(ca, "h0", ask)["trace"]["cache"] == "hit"


def test_entries_expire_and_clear_empties_the_cache(redis_url: str) -> None:
    from genre_agent.config import load_config

    cache = open_cache(load_config({"service": {"cache_url": redis_url, "cache_ttl_s": 1}}))
    assert isinstance(cache, RedisCache)
    cache.put("u", "k", "v")
    assert cache.get("u", "k") == "v" and cache.get("u", "other") is None
    assert cache.client.ttl("genre:rec:u") == 1
    cache.client.pexpire("genre:rec:u", 1)
    import time

    time.sleep(0.05)
    assert cache.get("u", "k") is None
    for n in range(3):
        cache.put(f"u{n}", "k", "v")
    cache.client.set("not:ours", "x")
    cache.clear()
    assert sorted(cache.client.scan_iter(match="*")) == [b"not:ours"]


def test_the_feedback_consumer_drops_the_entries_of_the_users_it_stores(
    tmp_path: Path, redis_url: str
) -> None:
    """`genre consume` (Consumer.from_config) keeps service.cache_url's cache fresh."""
    from genre_agent.config import load_config
    from genre_agent.queue import Consumer, connect
    from genre_agent.storage.interactions import InteractionStore

    cfg = load_config(
        {
            "service": {"cache_url": redis_url},
            "queue": {"redis_url": redis_url, "block_ms": 100},
        },
        use_env=False,
    )
    client = connect(cfg.queue)
    store = InteractionStore(tmp_path / "i.sqlite")
    consumer = Consumer.from_config(cfg, client, store)
    assert isinstance(consumer.cache, RedisCache)
    for user in ("a", "b", "c"):
        consumer.cache.put(user, "key", "answer")
    for n, user in enumerate(("a", "b", "a")):
        event = {"event_id": f"e{n}", "user_id": user, "item_id": "m1", "type": "view"}
        client.xadd(cfg.queue.stream, event)
    stats = consumer.run(lambda: False, until_idle=True)
    assert stats.stored == 3
    assert consumer.cache.get("a", "key") is None and consumer.cache.get("b", "key") is None
    assert consumer.cache.get("c", "key") == "answer"
    store.close()
