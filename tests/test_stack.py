"""scripts/stack.sh: the one-machine stack comes up (PostgreSQL, Redis, `chroma run`, two
`genre serve` replicas behind nginx, `genre consume`, `genre worker`), answers through nginx
with the cache shared by both replicas, routes around a killed replica, and goes down with
nothing left running. The CI test runs it without vLLM (`--no-llm`); the `slow` one with the
real default model in a vLLM server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from servers import postgres_bin

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "scripts" / "stack.sh"

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        shutil.which("redis-server") is None
        or postgres_bin() is None
        or (shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists()),
        reason="redis-server, postgres and nginx are needed (scripts/install-servers.sh)",
    ),
]


def _stack(folder: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "STACK_DIR": str(folder)}
    return subprocess.run(
        ["bash", str(STACK), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _state(folder: Path) -> dict:
    import json

    return json.loads((folder / "state.json").read_text())


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _leftovers(folder: Path) -> list[str]:
    """Processes whose command line names the stack's folder (every part's does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(folder) in cmd and _alive(int(entry.name)):
                found.append(f"{entry.name}: {cmd}")
    return found


def _get(url: str, **params: str) -> dict:
    with httpx.Client(timeout=120, headers={"connection": "close"}) as client:
        resp = client.get(url, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _up_and_down(folder: Path, checks: Callable[[dict], None], *up_args: str) -> None:
    """``up``, ``status``, ``checks(state)``, then ``down`` (twice) with nothing left."""
    up = _stack(folder, "up", *up_args)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        state = _state(folder)
        names = [p["name"] for p in state["parts"]]
        expected = ["postgres", "redis", "chroma", "serve-1", "serve-2", "nginx"]
        assert set(expected + ["consume", "worker"]) <= set(names), names
        status = _stack(folder, "status")
        assert status.returncode == 0, status.stdout
        assert all(f"{n} " in status.stdout for n in names), status.stdout
        checks(state)
    finally:
        saved = folder / "state.json"
        pids = [p["pid"] for p in _state(folder)["parts"]] if saved.exists() else []
        down = _stack(folder, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "nothing left running" in down.stdout
        assert not [p for p in pids if _alive(p)]
        assert not _leftovers(folder)
        again = _stack(folder, "down")  # idempotent
        assert again.returncode == 0 and "nothing running" in again.stdout
        assert _stack(folder, "status").returncode == 3
        if (folder / "postgres").is_symlink():  # PostgreSQL's data under /tmp (root only)
            shutil.rmtree((folder / "postgres").resolve(), ignore_errors=True)


def test_stack_without_llm_comes_up_serves_and_goes_down(tmp_path: Path) -> None:
    folder = tmp_path / "stack"
    seen: dict = {}

    def checks(state: dict) -> None:
        base = state["urls"]["url"]
        replicas = state["urls"]["replicas"].split()
        first = _get(f"{base}/v1/recommend/u3", explain="false", k="3")
        assert first["trace"]["cache"] == "miss" and len(first["items"]) == 3
        # Both replicas read the one Redis cache: a hit on each.
        for url in replicas:
            assert _get(f"{url}/v1/recommend/u3", explain="false", k="3")["trace"]["cache"] == "hit"
        explained = _get(f"{base}/v1/recommend/u4", explain="true", k="2")
        assert explained["trace"]["fallback"] == "llm_unavailable"
        # Feedback through nginx lands in PostgreSQL and drops the user's cache entry.
        event = {"event_id": uuid.uuid4().hex, "user_id": "u3", "item_id": "m1", "type": "like"}
        with httpx.Client(timeout=60) as client:
            r = client.post(f"{base}/v1/feedback", json={"events": [event]})
        assert r.status_code == 200, r.text
        assert _get(f"{base}/v1/recommend/u3", explain="false", k="3")["trace"]["cache"] == "miss"
        # A replica killed: nginx answers from the other one.
        serve1 = next(p for p in state["parts"] if p["name"] == "serve-1")
        os.killpg(serve1["pid"], signal.SIGKILL)
        time.sleep(0.5)
        for n in range(6):
            _get(f"{base}/v1/recommend/u{n}", explain="false", k="2")
        seen["ok"] = True

    _up_and_down(folder, checks, "--no-llm", "--set", "embedder.kind=fake")
    assert seen.get("ok"), "the checks did not run"


@pytest.mark.slow
def test_full_stack_with_vllm_explains_through_nginx(tmp_path: Path) -> None:
    """The whole stack with the default model in a vLLM server (waits for the LLM lock)."""
    folder = tmp_path / "stack"
    seen: dict = {}

    def checks(state: dict) -> None:
        assert "vllm" in [p["name"] for p in state["parts"]]
        body = _get(f"{state['urls']['url']}/v1/recommend/u5", explain="true", k="2")
        assert body["trace"].get("fallback") is None, body["trace"]
        assert body["trace"]["engine"] == "openai" and all(i["rationale"] for i in body["items"])
        seen["ok"] = True

    # The first explanation compiles the schema's grammar on a shared 2-core CPU: past the
    # default 20 s budget it would be a (flagged) llm_timeout.
    _up_and_down(folder, checks, "--set", "service.llm_budget_s=300")
    assert seen.get("ok"), "the checks did not run"


def test_a_part_that_does_not_come_up_is_named_and_everything_stops(tmp_path: Path) -> None:
    folder = tmp_path / "stack"
    try:
        up = _stack(folder, "up", "--no-llm", "--timeout", "0.01")
        assert up.returncode == 1
        # The first part slower than 10 ms (postgres, redis or chroma) is named, with its log.
        found = re.search(r"stack: (\S+) did not answer in 0s; see (\S+);", up.stderr)
        assert found, up.stderr
        assert found.group(2) == str(folder / "logs" / f"{found.group(1)}.log")
        assert "nothing left running" in up.stdout, up.stdout
        assert not _leftovers(folder)
    finally:
        if (folder / "postgres").is_symlink():
            shutil.rmtree((folder / "postgres").resolve(), ignore_errors=True)


def test_up_stopped_by_sigterm_stops_what_it_started(tmp_path: Path) -> None:
    folder = tmp_path / "stack"
    env = {**os.environ, "PYTHON": sys.executable, "STACK_DIR": str(folder)}
    proc = subprocess.Popen(
        ["bash", str(STACK), "up", "--no-llm", "--set", "embedder.kind=fake"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (folder / "state.json").exists() or len(_state(folder)["parts"]) < 2:
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.terminate()  # bash execs python: the signal reaches stack.py
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert "interrupted; stopping what was started" in err, err
        assert "nothing left running" in out and not _leftovers(folder)
    finally:
        if proc.poll() is None:
            proc.kill()
        _stack(folder, "down")
        if (folder / "postgres").is_symlink():
            shutil.rmtree((folder / "postgres").resolve(), ignore_errors=True)
