"""`genre consume` writing to PostgreSQL: killed with SIGKILL mid-run and restarted, every
valid event is stored exactly once (the SQLite version: tests/test_queue_real.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import postgres_bin, postgres_server, redis_server
from test_queue_real import GROUP, MALFORMED, STREAM, consume_cmd, send, wait_until

from genre_agent.config import Config
from genre_agent.storage.backends import open_interactions

redis = pytest.importorskip("redis")
pytest.importorskip("psycopg")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        shutil.which("redis-server") is None or postgres_bin() is None,
        reason="redis-server or postgres is not installed (scripts/install-servers.sh)",
    ),
]


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[tuple[int, str]]:
    with redis_server(tmp_path / "redis") as port, postgres_server() as url:
        yield port, url


def test_kill_and_restart_store_each_event_once_in_postgres(
    tmp_path: Path, servers: tuple[int, str]
) -> None:
    port, url = servers
    client = redis.Redis(port=port)
    store = open_interactions(Config.model_validate({"store": {"database_url": url}}))
    ids, bad = send(client, 0, 300)
    for fields, reason in MALFORMED:
        bad[client.xadd(STREAM, fields).decode()] = reason
    cmd = consume_cmd(port, tmp_path / "unused.sqlite", "-s", f"store.database_url={url}")
    with (tmp_path / "run1.log").open("w") as fh:
        first = subprocess.Popen(cmd, stderr=fh)
        try:
            wait_until(lambda: store.event_count() >= 60, 90, "60 events stored")
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    killed_at = store.event_count()
    more, _ = send(client, 300, 450)
    ids |= more
    log2 = tmp_path / "run2.log"
    with log2.open("w") as fh:
        second = subprocess.Popen(cmd, stderr=fh)
        try:

            def done() -> bool:
                info = {g["name"]: g for g in client.xinfo_groups(STREAM)}[GROUP.encode()]
                return store.event_count() == len(ids) and info["pending"] == 0

            wait_until(done, 120, f"{len(ids)} events stored and nothing pending")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
    assert second.returncode == 0, log2.read_text()
    assert killed_at < len(ids)
    counts = store.event_counts(sorted(ids))
    assert set(counts.values()) == {1}
    assert store.event_count() == len(ids)
    assert "other" not in store.item_counts()  # the first copy of a re-sent id won
    assert not (tmp_path / "unused.sqlite").exists()
