"""`genre serve --workers 2` against a real PostgreSQL: feedback sent through one request
changes the next answer, whichever worker serves it; with llm.engine = "openai" no worker
loads a model. Fake embedder; real uvicorn worker processes, real postgres, real embedded
Chroma."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import free_port, postgres_bin, postgres_server, serve

pytestmark = pytest.mark.server

CATALOG = Path(__file__).parent / "fixtures" / "catalog.jsonl"


def _genre(*args: str) -> list[str]:
    return [sys.executable, "-m", "genre_agent.cli", *args]


def write_config(folder: Path, port: int, database_url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "genre.toml"
    path.write_text(
        f'[store]\npath = "{folder / "chroma"}"\ndatabase_url = "{database_url}"\n'
        f'interactions_path = "{folder / "unused.sqlite"}"\n'
        # The openai engine, pointed at a port where nothing listens: built at start-up
        # (rationale_top_r > 0), never called (explain=false).
        '[embedder]\nkind = "fake"\n[llm]\nengine = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        "[retrieval]\nn_candidates = 20\nsources = { embedding = 1.0, popularity = 0.5 }\n"
        "[ranking]\nk = 3\nrationale_top_r = 2\n"
        f"[service]\nport = {port}\nqueue_metrics = false\n"
    )
    return path


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    if postgres_bin() is None:
        pytest.skip("postgres is not installed (scripts/install-servers.sh)")
    folder = tmp_path_factory.mktemp("workers")
    port = free_port()
    with postgres_server() as url:
        cfg = write_config(folder, port, url)
        done = subprocess.run(
            _genre("index", str(CATALOG), "-c", str(cfg)),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        base = f"http://127.0.0.1:{port}"
        with serve(
            _genre("serve", "-c", str(cfg), "--workers", "2"),
            f"{base}/health/ready",
            folder / "serve.log",
            timeout=300,
        ):
            yield base, url, folder


def _call(method: str, url: str, **kw: object) -> httpx.Response:
    # A new connection per call: a kept-alive one would stick to one worker.
    with httpx.Client(timeout=120, headers={"connection": "close"}) as client:
        resp = client.request(method, url, **kw)  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.text
    return resp


def test_feedback_through_one_worker_changes_the_next_answer_of_any(
    workers: tuple[str, str, Path],
) -> None:
    import psycopg

    base, database_url, folder = workers
    user = "u-" + uuid.uuid4().hex[:6]
    _call(
        "POST",
        f"{base}/v1/feedback",
        json={
            "events": [
                {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": "m1", "type": "like"}
            ]
        },
    )
    sent_total = 1
    seen_pids: set[str] = set()
    crossed = 0
    for _ in range(12):
        before = _call("GET", f"{base}/v1/recommend/{user}", params={"explain": "false"})
        top = before.json()["items"][0]["item"]["id"]
        sent = _call(
            "POST",
            f"{base}/v1/feedback",
            json={
                "events": [
                    {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": top, "type": "like"}
                ]
            },
        )
        assert sent.json()["stored"] == 1
        sent_total += 1
        after = _call("GET", f"{base}/v1/recommend/{user}", params={"explain": "false"})
        ids = [it["item"]["id"] for it in after.json()["items"]]
        # The liked item is now in the history, which the answer excludes.
        assert top not in ids, (top, ids)
        pids = {r.headers["x-genre-worker"] for r in (before, sent, after)}
        seen_pids |= pids
        crossed += sent.headers["x-genre-worker"] != after.headers["x-genre-worker"]
        if len(seen_pids) == 2 and crossed >= 2:
            break
    assert len(seen_pids) == 2, f"only worker(s) {seen_pids} answered"
    assert crossed >= 1, "no feedback was read back by the other worker"
    # The events are in PostgreSQL, and no SQLite file was made instead.
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM feedback WHERE user_id = %s", (user,))
        assert stored.fetchone()[0] == sent_total
    assert not (folder / "unused.sqlite").exists()


def test_workers_with_the_openai_engine_load_no_model(workers: tuple[str, str, Path]) -> None:
    """No worker maps torch or vLLM: the engine is an HTTP client."""
    base = workers[0]
    pids: set[str] = set()
    for _ in range(20):
        pids.add(_call("GET", f"{base}/health/ready").headers["x-genre-worker"])
        if len(pids) == 2:
            break
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text()
        loaded = {lib for lib in ("libtorch", "vllm", "_C.abi3.so") if lib in maps}
        assert not loaded, f"worker {pid} loaded {loaded}"
