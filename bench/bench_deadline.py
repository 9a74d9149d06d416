"""LLM deadlines against a trickling server: how long a call takes, and threads left behind.

    python -m bench.bench_deadline --requests 30 --timeout 5 --budget 3

Starts tests/trickle_server.py (answers 200, then one byte every ``--interval`` seconds,
never finishing), indexes the fixture catalog with the hashing embedder, then measures:
- `genre recommend --history m1 -k 3` with llm.engine=openai pointed at it and
  llm.request_timeout_s = ``--timeout``: wall time and exit code, next to the same command
  with the fake engine (the process's own start-up time);
- `genre serve` (llm.engine=openai, service.llm_budget_s = ``--budget``):
  ``--requests`` recommend requests with explain=true and as many chat turns, one at a time:
  p50/max latency, how many came back flagged, and the server process's thread count
  (/proc/PID/status) before, after, and 5 s after the last one.
Every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import pct, print_metrics

ROOT = Path(__file__).resolve().parents[1]
GENRE = [sys.executable, "-m", "genre_agent.cli"]
CATALOG = ROOT / "tests" / "fixtures" / "catalog.jsonl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise RuntimeError(f"no thread count for pid {pid}")


def sets(work: Path) -> list[str]:
    pairs = {
        "embedder.kind": "fake",
        "store.path": str(work / "chroma"),
        "store.interactions_path": str(work / "i.sqlite"),
        "profile.path": str(work / "p.sqlite"),
        "chat.sessions_path": str(work / "chat.sqlite"),
        "retrieval.sources": '{"embedding": 1.0}',
        "service.queue_metrics": "false",
    }
    return [arg for k, v in pairs.items() for arg in ("--set", f"{k}={v}")]


def timed(cmd: list[str]) -> tuple[float, int, str]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return time.monotonic() - t0, proc.returncode, tail


def http(url: str, body: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=300) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return time.monotonic() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=5.0, help="llm.request_timeout_s")
    ap.add_argument("--budget", type=float, default=3.0, help="service.llm_budget_s")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between bytes")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trickle = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "trickle_server.py"), str(args.interval)],
        stdout=subprocess.PIPE,
        text=True,
    )
    serve: subprocess.Popen[str] | None = None
    rows: list[tuple[str, str]] = []
    try:
        assert trickle.stdout is not None
        url = f"http://127.0.0.1:{int(trickle.stdout.readline())}/v1"
        work = Path(tempfile.mkdtemp(prefix="bench-deadline-"))
        common = sets(work)
        subprocess.run(
            [*GENRE, "index", str(CATALOG), *common, "--set", "llm.engine=fake"],
            check=True,
            capture_output=True,
            env=env,
        )
        rec = [*GENRE, "recommend", "--history", "m1", "-k", "3", *common]
        fake_s, fake_rc, _ = timed([*rec, "--set", "llm.engine=fake"])
        llm = ["--set", "llm.engine=openai", "--set", f"llm.base_url={url}"]
        cli_s, cli_rc, cli_tail = timed(
            [*rec, *llm, "--set", f"llm.request_timeout_s={args.timeout}"]
        )
        rows += [
            ("cli: fake engine (start-up) s", f"{fake_s:.1f} (exit {fake_rc})"),
            (
                f"cli: trickling server, request_timeout_s={args.timeout:g}, s",
                f"{cli_s:.1f} (exit {cli_rc})",
            ),
            ("cli: last stderr line", cli_tail[:90]),
        ]

        port = free_port()
        serve = subprocess.Popen(
            [*GENRE, "serve", "--port", str(port), *common, *llm]
            + ["--set", f"service.llm_budget_s={args.budget}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                http(f"{base}/health/ready")
                break
            except OSError:
                time.sleep(0.5)
        body = {"history": ["m1"], "k": 3, "explain": True}
        http(f"{base}/v1/recommend", body)  # warm-up: the server's worker threads
        sid = http(f"{base}/v1/sessions", {})[1]["id"]
        http(f"{base}/v1/sessions/{sid}/messages", {"message": "a comedy"})
        before = threads_of(serve.pid)
        rec_s, chat_s, flagged = [], [], 0
        for _ in range(args.requests):
            took, out = http(f"{base}/v1/recommend", body)
            rec_s.append(took)
            flagged += out["trace"]["fallback"] == "llm_timeout"
            took, turn = http(f"{base}/v1/sessions/{sid}/messages", {"message": "a comedy"})
            chat_s.append(took)
            flagged += turn.get("fallback") == "llm_timeout"
        after = threads_of(serve.pid)
        time.sleep(5)
        later = threads_of(serve.pid)
        n = args.requests
        rows += [
            (
                f"http recommend explain=true, budget {args.budget:g} s: p50 / max s",
                f"{pct(rec_s, 0.5):.2f} / {max(rec_s):.2f}",
            ),
            (
                f"http chat turn, budget {args.budget:g} s: p50 / max s",
                f"{pct(chat_s, 0.5):.2f} / {max(chat_s):.2f}",
            ),
            ("http answers flagged llm_timeout", f"{flagged} of {2 * n}"),
            ("server threads before / after / 5 s later", f"{before} / {after} / {later}"),
        ]
    finally:
        for proc in (serve, trickle):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print_metrics(rows)


if __name__ == "__main__":
    main()
