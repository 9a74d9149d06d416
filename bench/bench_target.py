"""Load test of an already running stack (scripts/stack.sh up): ``bench_service --target URL``.

    python -m bench.bench_service --target http://127.0.0.1:PORT --duration 5

In one run, closed-loop clients (each sends its next request when the last one answered):

1. one replica directly against nginx over both replicas, with 1, 2, 8 and 32 clients, on
   the fast path: recommend without rationales (stored users), similar, rank. The cache is
   emptied before each phase, so each starts with misses and the same user mix;
2. cache hit against miss: per client, a user's cache entry is deleted (outside the timed
   part), then the same request is sent twice; each answer is counted by its
   ``trace.cache``;
3. the peak resident memory (VmHWM, the kernel's high-water mark) of each ``genre serve``
   replica the stack started, and of its child processes: a replica is an API worker with
   the ``openai`` engine, so it holds no model (issue 22's target: at most 1.5 GB).

The replica URLs, the Redis of the cache and the stored users come from the stack's state
folder (``--stack-dir``: ``$STACK_DIR`` or ``.genre/stack``), or from ``--replica`` and
``--config``. Prints one table with throughput ratios against 1 client and against 1
replica in the same run. Timings are indicative: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_service import Api, PhaseResult, print_table, run_phase
from bench.common import pct

ENDPOINTS = ("recommend", "similar", "rank")


def stack_inputs(args: argparse.Namespace) -> tuple[list[str], Path]:
    """The replica URLs and the config file, from the flags or the stack's state folder."""
    state_file = args.stack_dir / "state.json"
    urls = json.loads(state_file.read_text()).get("urls", {}) if state_file.exists() else {}
    replicas = args.replica or urls.get("replicas", "").split()
    config = args.config or Path(urls.get("config", args.stack_dir / "genre.toml"))
    if not replicas:
        raise SystemExit(f"no replica URL: give --replica, or a running stack in {args.stack_dir}")
    return replicas, config


def users_items(config: Path, target: str) -> tuple[list[str], list[str], str]:
    """Stored users (the stack's interaction store), item ids (GET /v1/items), cache URL."""
    import httpx

    from genre_agent.config import load_config
    from genre_agent.storage.backends import open_interactions

    cfg = load_config(config)
    store = open_interactions(cfg)
    try:
        users = sorted(store.users())
    finally:
        store.close()
    items: list[str] = []
    cursor = None
    with httpx.Client(base_url=target, timeout=60) as client:
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/items", params=params).raise_for_status().json()
            items += [it["id"] for it in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
    if not cfg.service.cache_url:
        raise SystemExit(f"{config}: service.cache_url is not set (no cache to measure)")
    return users, items, cfg.service.cache_url


def flush_cache(redis_url: str, users: list[str] | None = None) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        keys = [f"genre:rec:{u}" for u in users] if users else list(r.scan_iter("genre:rec:*"))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


def makers(api: Api) -> dict[str, Callable[[random.Random], Any]]:
    return {
        "recommend": lambda rng: api.recommend(rng, explain=False),
        "similar": api.similar,
        "rank": api.rank,
    }


async def replica_phases(
    args: argparse.Namespace, targets: list[tuple[str, str]], api: Api, redis_url: str
) -> list[PhaseResult]:
    import httpx

    out = []
    for label, url in targets:
        limits = httpx.Limits(max_connections=max(args.target_clients))
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            for clients in args.target_clients:
                for endpoint, make in makers(api).items():
                    flush_cache(redis_url)
                    name = f"{label} | {endpoint}"
                    out.append(await run_phase(client, name, make, clients, args.duration))
                    print(f"  {name}, {clients} clients: {out[-1].rps:.1f} req/s", flush=True)
    return out


async def cache_phase(
    target: str, api: Api, redis_url: str, clients: int, duration: float
) -> dict[str, list[float]]:
    """Per client: delete a user's entry, then send the same request twice; latencies by
    the answer's ``trace.cache``."""
    import httpx

    by_state: dict[str, list[float]] = {}
    stop_at = time.perf_counter() + duration

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(1000 + i)
        while time.perf_counter() < stop_at:
            _, path, kw = api.recommend(rng, explain=False)
            await asyncio.to_thread(flush_cache, redis_url, [kw["json"]["user_id"]])
            for _ in range(2):
                t = time.perf_counter()
                resp = await client.post(path, **kw)
                took = time.perf_counter() - t
                state = (
                    resp.json()["trace"].get("cache", "?") if resp.status_code == 200 else "error"
                )
                by_state.setdefault(state, []).append(took)

    async with httpx.AsyncClient(base_url=target, timeout=300) as client:
        await asyncio.gather(*(worker(i, client) for i in range(clients)))
    return by_state


def replica_rows(results: list[PhaseResult]) -> list[tuple[str, ...]]:
    one_client = {r.name: r for r in results if r.clients == 1}
    first_label = results[0].name.split(" | ")[0]
    one_replica = {
        (r.name.split(" | ")[1], r.clients): r for r in results if r.name.startswith(first_label)
    }
    rows = []
    for r in results:
        label, endpoint = r.name.split(" | ")
        ms = [x * 1000 for x in r.latencies]
        base_c, base_r = one_client.get(r.name), one_replica.get((endpoint, r.clients))
        rows.append(
            (
                label,
                endpoint,
                str(r.clients),
                str(len(r.latencies)),
                f"{r.rps:.1f}",
                f"{r.rps / base_c.rps:.2f}x" if base_c and base_c.rps else "-",
                f"{r.rps / base_r.rps:.2f}x" if base_r and base_r.rps else "-",
                f"{pct(ms, 0.50):.0f}",
                f"{pct(ms, 0.95):.0f}",
                str(r.errors) + (f" {r.error_kinds}" if r.errors else ""),
            )
        )
    return rows


def run(args: argparse.Namespace) -> None:
    args.stack_dir = args.stack_dir.resolve()
    replicas, config = stack_inputs(args)
    users, items, redis_url = users_items(config, args.target)
    api = Api(args.target, users, items)
    if args.kill_replica:
        from bench.bench_kill import run_kill

        run_kill(args, api, config)
        return
    targets = [("1 replica", replicas[0]), (f"nginx, {len(replicas)} replicas", args.target)]
    print(f"target {args.target}; replicas {' '.join(replicas)}; {len(users)} users, "
          f"{len(items)} items; {args.duration:.0f}s per phase")  # fmt: skip
    results = asyncio.run(replica_phases(args, targets, api, redis_url))
    print()
    head = ("target", "endpoint", "clients", "requests", "req/s", "vs 1 client",
            "vs 1 replica", "p50 ms", "p95 ms", "errors")  # fmt: skip
    print_table(replica_rows(results), head)
    rows = []
    for clients in args.cache_clients:
        got = asyncio.run(cache_phase(args.target, api, redis_url, clients, args.duration))
        for state in sorted(got):
            ms = [x * 1000 for x in got[state]]
            rows.append((str(clients), state, str(len(ms)), f"{pct(ms, 0.5):.1f}",
                         f"{pct(ms, 0.95):.1f}"))  # fmt: skip
    print("\ncache (recommend without rationales through nginx; entry deleted, then 2 requests)")
    print_table(rows, ("clients", "trace.cache", "requests", "p50 ms", "p95 ms"))
    memory = memory_rows(args.stack_dir)
    if memory:
        print("\npeak memory of the API replicas (VmHWM), against the 1.5 GB target")
        print_table(memory, ("part", "pid", "processes", "peak RSS MB", "vs 1.5 GB"))


TARGET_MB = 1536.0


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _group(pgid: int) -> list[int]:
    """The live processes of a process group (the stack starts each part in its own)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # field 5 of /proc/PID/stat: the process group
                pids.append(int(proc.name))
    return pids


def memory_rows(stack_dir: Path) -> list[tuple[str, ...]]:
    """Per ``genre serve`` replica of the stack: its processes' largest peak RSS."""
    state_file = stack_dir / "state.json"
    if not state_file.exists():
        return []
    rows = []
    for part in json.loads(state_file.read_text()).get("parts", []):
        if not str(part.get("name", "")).startswith("serve"):
            continue
        pids = _group(int(part["pid"])) or [int(part["pid"])]
        peaks = [kb for kb in (_status_kb(p, "VmHWM") for p in pids) if kb is not None]
        if not peaks:
            continue
        mb = max(peaks) / 1024
        rows.append((part["name"], str(part["pid"]), str(len(pids)), f"{mb:.0f}",
                     f"{mb / TARGET_MB:.2f}"))  # fmt: skip
    return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    import os

    ap.add_argument("--target", help="URL of a running stack (nginx): drive it, start nothing")
    ap.add_argument(
        "--kill-replica",
        action="store_true",
        help="only SIGKILL the stack's last replica mid-load (bench/bench_kill.py)",
    )
    ap.add_argument("--replica", action="append", help="a replica's URL (default: the stack's)")
    ap.add_argument("--config", type=Path, help="the stack's genre.toml (users, cache URL)")
    default_dir = Path(os.environ.get("STACK_DIR", ".genre/stack"))
    ap.add_argument("--stack-dir", type=Path, default=default_dir)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    ap.add_argument("--target-clients", type=ints, default=[1, 2, 8, 32])
    ap.add_argument("--cache-clients", type=ints, default=[1, 8])
