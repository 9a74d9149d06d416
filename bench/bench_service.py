"""Load test of the HTTP service and the feedback pipeline, with real servers.

    python -m bench.bench_service --duration 10 --clients 8 --events 500

Starts ``redis-server`` and ``genre serve`` on free loopback ports over ml-latest-small (or
a generated catalog when ``../shared/data/ml-latest-small`` is missing), plus
``genre consume``. Then, per endpoint of the fast path (recommend without rationales, rank,
similar), ``--duration`` seconds with 1 client and the same with ``--clients`` concurrent
clients (closed loop: each client sends its next request when the last one answered); then
recommend with rationales (the LLM path) for at most ``--rationale-requests`` requests.
While the fast path runs, ``--events`` feedback events go over HTTP (POST /v1/feedback) and
as many through Redis (XADD), 5% of them sent twice; halfway through, ``genre consume`` is
killed with SIGKILL by PID and restarted. At the end every sent event id is counted in the
store: each must be there exactly once.

Prints one table: requests/s and p50/p95/p99 latency per endpoint and client count, the
throughput ratio of N clients over 1 client in the same run, errors, and the event counts.
Every server is stopped by its PID at the end.

With ``--target URL`` it starts nothing and drives an already running stack
(scripts/stack.sh): 1 replica against 2, 1/2/8/32 clients, cache hit against miss
(bench/bench_target.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import DATA, pct

GENRE = [sys.executable, "-m", "genre_agent.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- processes, each stopped by its PID ---------------------------------------------------


@dataclass
class Proc:
    name: str
    cmd: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        fh = self.log.open("a")
        fh.write(f"\n--- start {self.starts + 1}: {' '.join(self.cmd)}\n")
        fh.flush()
        self.proc = subprocess.Popen(
            self.cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        fh.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL by PID: no clean-up runs in the process."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM by PID, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=30)


def wait_for(check: Callable[[], bool], timeout: float, what: str, procs: list[Proc]) -> None:
    deadline = time.time() + timeout
    while not check():
        for p in procs:
            p.check()
        if time.time() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def redis_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_up(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# --- data ----------------------------------------------------------------------------------


def dataset(workdir: Path) -> tuple[Path, Path, str]:
    """(catalog, interactions, name): ml-latest-small, else a generated catalog."""
    if (DATA / "movies.csv").exists():
        return DATA, DATA / "ratings.csv", "ml-latest-small"
    from genre_eval.fixtures import write_jsonl_dataset

    d = write_jsonl_dataset(workdir / "generated", n_users=200, n_items=600, per_user=20)
    return d / "items.jsonl", d / "interactions.jsonl", "generated (200 users, 600 items)"


def users_and_items(db: Path) -> tuple[list[str], list[str]]:
    from genre_agent.storage.interactions import InteractionStore

    store = InteractionStore(db)
    try:
        users = list(store.users())
        items = sorted(store.item_counts())
    finally:
        store.close()
    return users, items


# --- the API (bodies of each endpoint) -----------------------------------------------------


Call = tuple[str, str, dict[str, Any]]  # method, path, httpx keyword arguments


@dataclass(frozen=True)
class Api:
    """The request of each endpoint (docs at /docs of `genre serve`)."""

    base: str
    users: list[str]
    items: list[str]
    k: int = 10

    def recommend(self, rng: random.Random, explain: bool) -> Call:
        body = {"user_id": rng.choice(self.users), "k": self.k, "explain": explain}
        return "POST", "/v1/recommend", {"json": body}

    def rank(self, rng: random.Random) -> Call:
        body = {
            "user_id": rng.choice(self.users),
            "candidates": rng.sample(self.items, min(30, len(self.items))),
            "k": self.k,
            "explain": False,
        }
        return "POST", "/v1/rank", {"json": body}

    def similar(self, rng: random.Random) -> Call:
        item = rng.choice(self.items)
        params = {"k": self.k, "explain": "false"}
        return "GET", f"/v1/items/{item}/similar", {"params": params}

    @staticmethod
    def feedback(events: list[dict[str, Any]]) -> Call:
        return "POST", "/v1/feedback", {"json": {"events": events}}


# --- load phases ---------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    clients: int
    seconds: float
    latencies: list[float]
    errors: int
    error_kinds: dict[str, int]
    # 200 answers whose trace names a fallback (e.g. llm_timeout: past service.llm_budget_s).
    fallbacks: dict[str, int]

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def run_phase(
    client: Any,
    name: str,
    make: Callable[[random.Random], Call],
    clients: int,
    duration: float,
    max_requests: int | None = None,
    seed: int = 0,
) -> PhaseResult:
    """``clients`` closed-loop workers for ``duration`` seconds (or ``max_requests``)."""
    lat: list[float] = []
    kinds: dict[str, int] = {}
    fallbacks: dict[str, int] = {}
    sent = [0]
    stop_at = time.perf_counter() + duration

    async def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        while time.perf_counter() < stop_at:
            if max_requests is not None and sent[0] >= max_requests:
                return
            sent[0] += 1
            method, path, kw = make(rng)
            t = time.perf_counter()
            try:
                resp = await client.request(method, path, **kw)
                ok = resp.status_code == 200
                kind = f"HTTP {resp.status_code}"
            except Exception as exc:  # every failure is counted, by kind
                ok, kind = False, type(exc).__name__
            if ok:
                lat.append(time.perf_counter() - t)
                fb = (resp.json().get("trace") or {}).get("fallback")
                if fb:
                    fallbacks[fb] = fallbacks.get(fb, 0) + 1
            else:
                kinds[kind] = kinds.get(kind, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    secs = time.perf_counter() - t0
    return PhaseResult(name, clients, secs, lat, sum(kinds.values()), kinds, fallbacks)


# --- feedback events -----------------------------------------------------------------------


@dataclass
class EventLog:
    ids: set[str] = field(default_factory=set)
    http_sent: int = 0
    redis_sent: int = 0
    resent: int = 0
    http_errors: dict[str, int] = field(default_factory=dict)


def make_event(
    prefix: str, via: str, n: int, users: list[str], items: list[str], rng: random.Random
) -> dict[str, Any]:
    kind = rng.choice(["view", "click", "like", "dislike", "purchase", "rating"])
    ev: dict[str, Any] = {
        "event_id": f"{prefix}-{via}-{n}",
        "user_id": rng.choice(users),
        "item_id": rng.choice(items),
        "type": kind,
        "timestamp": time.time(),
    }
    if kind == "rating":
        ev["value"] = rng.choice([1.0, 2.5, 3.5, 4.0, 5.0])
    return ev


async def post_feedback(client: Any, events: list[dict[str, Any]], log: EventLog) -> None:
    method, path, kw = Api.feedback(events)
    try:
        resp = await client.request(method, path, **kw)
        if resp.status_code != 200:
            key = f"HTTP {resp.status_code}: {resp.text[:80]}"
            log.http_errors[key] = log.http_errors.get(key, 0) + 1
    except Exception as exc:  # counted; those events may then be lost (reported)
        key = type(exc).__name__
        log.http_errors[key] = log.http_errors.get(key, 0) + 1


async def send_events(
    client: Any,
    rdb: Any,
    stream: str,
    log: EventLog,
    m: int,
    spread_s: float,
    prefix: str,
    users: list[str],
    items: list[str],
    batch: int = 10,
) -> None:
    """``m`` events over HTTP and ``m`` through Redis, in batches of ``batch``, spread over
    ``spread_s`` seconds; 5% of each path's events are sent a second time."""
    rng = random.Random(1)
    steps = max(1, (m + batch - 1) // batch)
    pause = spread_s / steps
    for step in range(steps):
        lo, hi = step * batch, min(m, (step + 1) * batch)
        http_events = [make_event(prefix, "http", n, users, items, rng) for n in range(lo, hi)]
        redis_events = [make_event(prefix, "redis", n, users, items, rng) for n in range(lo, hi)]
        again_http = [e for e in http_events if rng.random() < 0.05]
        again_redis = [e for e in redis_events if rng.random() < 0.05]
        for events in (http_events, again_http):
            if events:
                await post_feedback(client, events, log)
        pipe = rdb.pipeline(transaction=False)
        for e in [*redis_events, *again_redis]:
            pipe.xadd(stream, {"event": json.dumps(e)})
        await pipe.execute()
        log.ids.update(e["event_id"] for e in [*http_events, *redis_events])
        log.http_sent += len(http_events) + len(again_http)
        log.redis_sent += len(redis_events) + len(again_redis)
        log.resent += len(again_http) + len(again_redis)
        await asyncio.sleep(pause)


async def kill_and_restart(
    consumer: Proc, rdb: Any, qcfg: Any, after_s: float, down_s: float, note: list[str]
) -> None:
    """After ``after_s`` seconds, SIGKILL the consumer by PID, preferably while it holds
    entries read but not acknowledged (polled for up to 10 s); restart it ``down_s`` later."""
    await asyncio.sleep(after_s)
    pending = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        groups = await rdb.xinfo_groups(qcfg.stream)
        pending = sum(int(g["pending"]) for g in groups)
        if pending:
            break
        await asyncio.sleep(0.002)
    pid = consumer.proc.pid if consumer.proc else None
    consumer.kill()
    note.append(f"pid {pid} killed (SIGKILL) at {after_s:.0f}s holding {pending} unacked entries")
    await asyncio.sleep(down_s)
    consumer.start()
    note.append(f"restarted as pid {consumer.proc.pid if consumer.proc else None}")


# --- the table -----------------------------------------------------------------------------


def print_table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def phase_row(p: PhaseResult, base: PhaseResult | None) -> tuple[str, ...]:
    ms = [x * 1000 for x in p.latencies]
    ratio = f"{p.rps / base.rps:.2f}x" if base is not None and base.rps else "1.00x"
    errs = str(p.errors) + (f" {p.error_kinds}" if p.errors else "")
    return (
        p.name,
        str(p.clients),
        str(len(p.latencies)),
        f"{p.rps:.1f}",
        ratio,
        f"{pct(ms, 0.50):.0f}",
        f"{pct(ms, 0.95):.0f}",
        f"{pct(ms, 0.99):.0f}",
        errs,
        ", ".join(f"{k} {v}" for k, v in sorted(p.fallbacks.items())) or "0",
    )


# --- main ----------------------------------------------------------------------------------


async def load(args: argparse.Namespace, api: Api, consumer: Proc, qcfg: Any, db: Path) -> None:
    import httpx
    import redis.asyncio as aredis

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    log = EventLog()
    notes: list[str] = []
    limits = httpx.Limits(
        max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4
    )
    async with httpx.AsyncClient(base_url=api.base, timeout=120, limits=limits) as client:
        rdb = aredis.Redis.from_url(qcfg.redis_url)
        fast = [
            ("recommend (explain=false)", lambda r: api.recommend(r, explain=False)),
            ("rank", api.rank),
            ("similar", api.similar),
        ]
        # Warm-up: the first request of each endpoint builds caches.
        for _, make in fast:
            method, path, kw = make(random.Random(0))
            (await client.request(method, path, **kw)).raise_for_status()
        fast_s = 2 * len(fast) * args.duration
        events = asyncio.create_task(
            send_events(
                client,
                rdb,
                qcfg.stream,
                log,
                args.events,
                fast_s * 0.8,
                prefix,
                api.users,
                api.items,
            )
        )
        killer = asyncio.create_task(kill_and_restart(consumer, rdb, qcfg, fast_s / 2, 1.0, notes))
        results: list[tuple[PhaseResult, PhaseResult | None]] = []
        for name, make in fast:
            one = await run_phase(client, name, make, 1, args.duration)
            many = await run_phase(client, name, make, args.clients, args.duration, seed=1)
            results.append((one, None))
            results.append((many, one))
        await events
        await killer
        rationale = await run_phase(
            client,
            "recommend (explain=true)",
            lambda r: api.recommend(r, explain=True),
            min(args.clients, 2),
            args.rationale_seconds,
            max_requests=args.rationale_requests,
            seed=2,
        )
        results.append((rationale, None))
        await rdb.aclose()

    # Every event: HTTP ones are committed before their 200; Redis ones once the group
    # has nothing pending or undelivered.
    from genre_agent.queue import connect, queue_status

    rc = connect(qcfg)
    t0 = time.time()
    wait_for(
        lambda: (st := queue_status(rc, qcfg)).pending == 0 and st.lag == 0,
        120,
        "the consumer to drain the stream",
        [consumer],
    )
    drain_s = time.time() - t0
    from genre_agent.storage.interactions import InteractionStore

    store = InteractionStore(db)
    counts = store.event_counts(sorted(log.ids))
    stored_rows = int(
        store.db.execute(
            "SELECT COUNT(*) FROM feedback WHERE event_id LIKE ?", (f"{prefix}-%",)
        ).fetchone()[0]
    )
    store.close()
    lost = sum(1 for n in counts.values() if n == 0)
    dup = sum(1 for n in counts.values() if n > 1) + max(0, stored_rows - len(log.ids))

    print_table(
        [phase_row(p, b) for p, b in results],
        (
            "endpoint",
            "clients",
            "requests",
            "req/s",
            "vs 1 client",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "errors",
            "fallbacks",
        ),
    )
    print()
    print_table(
        [
            ("events sent over HTTP (incl. re-sends)", str(log.http_sent)),
            ("events sent through Redis (incl. re-sends)", str(log.redis_sent)),
            ("re-sent (same event_id)", str(log.resent)),
            ("distinct event ids sent", str(len(log.ids))),
            ("stored rows with this run's ids", str(stored_rows)),
            ("lost (sent, not stored)", str(lost)),
            ("duplicated (stored more than once)", str(dup)),
            (
                "HTTP feedback errors",
                str(sum(log.http_errors.values()))
                + (f" {log.http_errors}" if log.http_errors else ""),
            ),
            ("consumer", "; ".join(notes)),
            ("drain after the load (s)", f"{drain_s:.1f}"),
        ],
        ("feedback", "value"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per fast-path phase")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--events", type=int, default=500, help="events per path (HTTP, Redis)")
    ap.add_argument("--rationale-requests", type=int, default=6)
    ap.add_argument("--rationale-seconds", type=float, default=120.0)
    ap.add_argument("--workdir", type=Path, default=Path(".genre/bench-service"))
    ap.add_argument(
        "--set",
        "-s",
        dest="sets",
        action="append",
        default=[],
        help="extra config override for genre serve / consume (key=value)",
    )
    from bench import bench_target

    bench_target.add_arguments(ap)
    args = ap.parse_args()
    if args.target:
        bench_target.run(args)
        return
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (scripts/install-servers.sh installs it)")

    from genre_agent.config import load_config

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    catalog, ratings, name = dataset(work)
    db = work / "interactions.sqlite"
    redis_port, http_port = free_port(), free_port()
    sets = [
        f"store.path={work / 'chroma'}",
        f"store.interactions_path={db}",
        f"profile.path={work / 'profiles.sqlite'}",
        f"chat.sessions_path={work / 'chat.sqlite'}",
        f"queue.redis_url=redis://127.0.0.1:{redis_port}/0",
        f"service.port={http_port}",
        "queue.status_every_s=2",
        *args.sets,
    ]
    flags = [x for s in sets for x in ("-s", s)]
    qcfg = load_config({}, overrides=dict(s.split("=", 1) for s in sets)).queue
    t0 = time.time()
    subprocess.run(
        [*GENRE, "index", str(catalog), "--interactions", str(ratings), *flags], check=True
    )
    index_s = time.time() - t0
    (work / "redis").mkdir(exist_ok=True)
    procs = [
        Proc(
            "redis-server",
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work / "redis"),
            ],
            work / "redis.log",
        ),
        Proc("genre serve", [*GENRE, "serve", *flags], work / "serve.log"),
        Proc("genre consume", [*GENRE, "consume", *flags], work / "consume.log"),
    ]
    redis_p, serve_p, consume_p = procs
    try:
        redis_p.start()
        wait_for(lambda: redis_up(redis_port), 30, "redis-server", [redis_p])
        t0 = time.time()
        serve_p.start()
        base = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: http_up(base + "/health/ready"), 600, "genre serve", [serve_p])
        serve_s = time.time() - t0
        consume_p.start()
        users, items = users_and_items(db)
        api = Api(base, users, items)
        print(
            f"data: {name}; index {index_s:.0f}s; serve up in {serve_s:.0f}s; "
            f"{os.cpu_count()} cores (shared with other work: numbers are indicative)"
        )
        asyncio.run(load(args, api, consume_p, qcfg, db))
    finally:
        for p in reversed(procs):
            p.stop()
    print(f"\nlogs: {work}/{{serve,consume,redis}}.log")


if __name__ == "__main__":
    main()
