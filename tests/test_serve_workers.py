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
        "[retrieval]\nn_candidates = 20\n"
        "sources = { embedding = 1.0, popularity = 0.5, itemknn = 1.0 }\n"
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
        # Users who watched pairs of catalog items: item-kNN is fitted on them at index time.
        rows = [f"c{n},m{n % 10 + 1},1,5" for n in range(40)]
        rows += [f"c{n},m{n % 10 + 11},2,5" for n in range(40)]
        (folder / "inter.csv").write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows))
        done = subprocess.run(
            _genre(
                "index", str(CATALOG), "-c", str(cfg), "--interactions", str(folder / "inter.csv")
            ),
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


def _ready_models(base: str) -> tuple[str, dict]:
    resp = _call("GET", f"{base}/health/ready")
    return resp.headers["x-genre-worker"], resp.json()["models"]


def test_a_refit_while_serving_brings_no_error_and_every_worker_serves_the_new_model(
    workers: tuple[str, str, Path],
) -> None:
    import os
    import threading
    import time

    base, _, folder = workers
    cfg = folder / "genre.toml"
    link = folder / "models" / "itemknn"
    first = os.readlink(link)
    errors: list[str] = []
    served = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                with httpx.Client(timeout=120, headers={"connection": "close"}) as client:
                    r = client.get(
                        f"{base}/v1/recommend/c{served[0] % 40}", params={"explain": "false"}
                    )
                if r.status_code != 200 or not r.json()["items"]:
                    errors.append(f"{r.status_code}: {r.text[:300]}")
                served[0] += 1
            except httpx.HTTPError as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for n in range(2):
            events = [
                {
                    "event_id": uuid.uuid4().hex,
                    "user_id": f"r{n}{m}",
                    "item_id": f"m{m + 1}",
                    "type": "like",
                }
                for m in range(20)
            ]
            _call("POST", f"{base}/v1/feedback", json={"events": events})
            fit = subprocess.run(
                _genre("fit", "-c", str(cfg), "--source", "itemknn"),
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert fit.returncode == 0, fit.stderr[-3000:]
        newest = os.readlink(link)
        assert newest != first
        # Every worker serves the newest version after its next request.
        want = f"v:{newest}"
        deadline = time.time() + 120
        seen: dict[str, str] = {}
        while time.time() < deadline and not (len(seen) == 2 and set(seen.values()) == {want}):
            pid, loaded = _ready_models(base)
            seen[pid] = loaded.get("itemknn", {}).get("version", "")
            time.sleep(0.2)
        assert len(seen) == 2 and set(seen.values()) == {want}, seen
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [], errors[:5]
    assert served[0] > 0


def test_sessions_and_forget_user_run_on_postgres_across_workers(
    workers: tuple[str, str, Path],
) -> None:
    import psycopg

    base, database_url, _ = workers
    user = "f-" + uuid.uuid4().hex[:6]
    events = [
        {"event_id": uuid.uuid4().hex, "user_id": user, "item_id": f"m{n}", "type": "like"}
        for n in (1, 2, 3)
    ]
    _call("POST", f"{base}/v1/feedback", json={"events": events})
    made = httpx.post(f"{base}/v1/sessions", json={"user_id": user}, timeout=60)
    assert made.status_code == 201, made.text
    session_id = made.json()["id"]
    # Any worker resumes the session: it is in the database, not in a worker.
    for _ in range(4):
        assert _call("GET", f"{base}/v1/sessions/{session_id}").json()["user_id"] == user
    gone = _call("DELETE", f"{base}/v1/users/{user}").json()
    assert (gone["events"], gone["chat_sessions"]) == (3, 1)
    with psycopg.connect(database_url) as conn:
        for table, column in (("feedback", "user_id"), ("sessions", "user_id")):
            n = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = %s", (user,))
            assert n.fetchone()[0] == 0, table
    # A redelivered event of the forgotten user is not stored again.
    again = _call("POST", f"{base}/v1/feedback", json={"events": events[:1]}).json()
    assert (again["stored"], again["duplicates"]) == (0, [events[0]["event_id"]])
