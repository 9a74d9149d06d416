"""`genre consume` against a real redis-server: killed with SIGKILL mid-run and restarted,
every valid event is stored exactly once, malformed ones are dead-lettered with a reason,
and nothing is left pending."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import redis_server

from genre_agent.storage.interactions import InteractionStore

redis = pytest.importorskip("redis")

pytestmark = [
    pytest.mark.real,
    pytest.mark.server,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server is not installed (scripts/install-servers.sh installs it)",
    ),
]

STREAM, GROUP, DEAD = "genre:feedback", "genre", "genre:feedback:dead"
GENRE = [sys.executable, "-m", "genre_agent.cli"]


@pytest.fixture()
def redis_port(tmp_path: Path) -> Iterator[int]:
    with redis_server(tmp_path / "redis") as port:
        yield port


def consume_cmd(port: int, db: Path, *extra: str) -> list[str]:
    return [
        *GENRE,
        "consume",
        "-s",
        f"queue.redis_url=redis://127.0.0.1:{port}/0",
        "-s",
        f"store.interactions_path={db}",
        "-s",
        "queue.batch=20",
        "-s",
        "queue.block_ms=100",
        "-s",
        "queue.status_every_s=0.5",
        *extra,
    ]


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    store = InteractionStore(db)
    try:
        return store.event_count()
    finally:
        store.close()


def valid(i: int, **over: object) -> dict[str, str]:
    fields = {
        "event_id": f"ev-{i}",
        "user_id": f"u{i % 13}",
        "item_id": f"item{i % 37}",
        "type": ("view", "click", "like", "dislike", "purchase")[i % 5],
        "timestamp": str(1000 + i),
    }
    fields.update({k: str(v) for k, v in over.items()})
    return fields


MALFORMED: list[tuple[dict, str]] = [
    ({"event": "{oops"}, "bad JSON"),
    ({"event": json.dumps(["a"])}, "expected a JSON object"),
    ({"event_id": "m-1", "user_id": "u", "type": "view"}, "field 'item_id'"),
    ({"event_id": "m-2", "user_id": "u", "item_id": "i", "type": "wink"}, "field 'type'"),
    ({"event_id": "m-3", "user_id": "u", "item_id": "i", "type": "rating"}, "field 'value'"),
    (
        {"event_id": "m-4", "user_id": "u", "item_id": "i", "type": "view", "value": "inf"},
        "field 'value'",
    ),
    ({b"event_id": b"\xfe\xff", b"user_id": b"u", b"item_id": b"i", b"type": b"view"}, "not UTF-8"),
]


def send(client, start: int, stop: int) -> tuple[set[str], dict[str, str]]:
    """XADD events start..stop-1; every 10th is re-sent (same id, other content), and
    the malformed ones are spread in. Returns the valid ids and {source id: reason}."""
    ids: set[str] = set()
    bad: dict[str, str] = {}
    for i in range(start, stop):
        client.xadd(STREAM, valid(i))
        ids.add(f"ev-{i}")
        if i % 10 == 0:
            client.xadd(STREAM, valid(i, item_id="other", timestamp=1))
        if i % 50 == 25:
            fields, reason = MALFORMED[(i // 50) % len(MALFORMED)]
            bad[client.xadd(STREAM, fields).decode()] = reason
    return ids, bad


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_kill_and_restart_store_each_event_once(tmp_path: Path, redis_port: int) -> None:
    client = redis.Redis(port=redis_port)
    db = tmp_path / "i.sqlite"
    ids, bad = send(client, 0, 400)
    for fields, reason in MALFORMED:  # every kind at least once
        bad[client.xadd(STREAM, fields).decode()] = reason
    env = {**os.environ}
    log1 = (tmp_path / "run1.log").open("w")
    first = subprocess.Popen(consume_cmd(redis_port, db), stderr=log1, env=env)
    try:
        wait_until(lambda: stored(db) >= 60, 90, "the first consumer to store 60 events")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    log1.close()
    assert first.returncode == -signal.SIGKILL
    killed_at = stored(db)
    # More events arrive while no consumer runs.
    more, more_bad = send(client, 400, 600)
    ids |= more
    bad.update(more_bad)
    log2 = tmp_path / "run2.log"
    with log2.open("w") as fh:
        second = subprocess.Popen(consume_cmd(redis_port, db), stderr=fh, env=env)
        try:

            def done() -> bool:
                info = {g["name"]: g for g in client.xinfo_groups(STREAM)}[GROUP.encode()]
                return stored(db) == len(ids) and info["pending"] == 0 and info["lag"] == 0

            wait_until(done, 90, f"{len(ids)} events stored and nothing pending")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
    assert second.returncode == 0, log2.read_text()
    assert "stopped (signal)" in log2.read_text()
    assert killed_at < len(ids)

    store = InteractionStore(db)
    counts = store.event_counts(sorted(ids))
    assert set(counts.values()) == {1}, [k for k, n in counts.items() if n != 1][:5]
    assert store.event_count() == len(ids)
    # The first copy of a re-sent id won: no "other" item was stored.
    assert "other" not in store.item_counts()
    store.close()
    dead = {
        e[b"source_id"].decode(): (e[b"reason"].decode(), json.loads(e[b"fields"]))
        for _, e in client.xrange(DEAD)
    }
    assert set(dead) == set(bad)  # each malformed message dead-lettered exactly once
    assert client.xlen(DEAD) == len(bad)
    for source_id, reason in bad.items():
        assert reason in dead[source_id][0], (source_id, dead[source_id])
    assert client.xpending(STREAM, GROUP)["pending"] == 0


def test_restart_rereads_entries_read_but_never_acked(tmp_path: Path, redis_port: int) -> None:
    client = redis.Redis(port=redis_port)
    db = tmp_path / "i.sqlite"
    ids, _ = send(client, 0, 45)
    # A consumer that read 30 entries and died before acknowledging them.
    client.xgroup_create(STREAM, GROUP, id="0")
    got = client.xreadgroup(GROUP, "consumer-1", {STREAM: ">"}, count=30)
    assert len(got[0][1]) == 30
    assert client.xpending(STREAM, GROUP)["pending"] == 30
    run = subprocess.run(
        consume_cmd(redis_port, db, "--until-idle"), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "replayed 30" in run.stderr, run.stderr
    assert "group lag 0, pending 0" in run.stderr, run.stderr
    assert stored(db) == len(ids)
    assert client.xpending(STREAM, GROUP)["pending"] == 0


def test_entries_left_pending_by_a_dead_consumer_are_claimed(
    tmp_path: Path, redis_port: int
) -> None:
    client = redis.Redis(port=redis_port)
    db = tmp_path / "i.sqlite"
    ids, _ = send(client, 0, 30)
    client.xgroup_create(STREAM, GROUP, id="0")
    # consumer-2 read 12 entries and died; consumer-1 is started below.
    assert len(client.xreadgroup(GROUP, "consumer-2", {STREAM: ">"}, count=12)[0][1]) == 12
    time.sleep(0.3)
    run = subprocess.run(
        consume_cmd(redis_port, db, "--until-idle", "-s", "queue.claim_idle_ms=200"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "claimed 12" in run.stderr, run.stderr
    assert stored(db) == len(ids)
    assert client.xpending(STREAM, GROUP)["pending"] == 0
