"""SIGKILL one replica of a running stack in the middle of a load (issue 22's target):

    python -m bench.bench_service --target http://127.0.0.1:PORT --kill-replica --duration 4

Through nginx, ``--clients`` closed-loop clients ask for recommendations (no rationales) and
one client posts feedback batches (5 events each, each event id new) as fast as they are
answered. ``--duration`` seconds in, the last replica of the stack gets SIGKILL (its whole
process group, so requests in flight on it die with it); the load goes on for as long
again. Then every event whose batch was acknowledged (HTTP 200) is looked up in the stack's
interaction store: an acknowledged event must be stored exactly once (nginx retries a failed
feedback POST on the other replica, and event ids make a retry harmless).

Prints the requests and errors before and after the kill and the events acknowledged, lost
and duplicated. The killed replica stays down: ``scripts/stack.sh down`` then stops the rest.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_service import Api, print_table


@dataclass
class Tally:
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass
class KillRun:
    before: Tally = field(default_factory=Tally)
    after: Tally = field(default_factory=Tally)
    acked: list[str] = field(default_factory=list)
    refused: int = 0
    killed_at: float | None = None
    note: str = ""

    def tally(self) -> Tally:
        return self.before if self.killed_at is None else self.after


def last_replica(stack_dir: Path) -> tuple[str, int]:
    parts = json.loads((stack_dir / "state.json").read_text()).get("parts", [])
    serves = [p for p in parts if str(p.get("name", "")).startswith("serve")]
    if len(serves) < 2:
        raise SystemExit(f"{stack_dir}: fewer than two replicas; nothing would answer")
    return str(serves[-1]["name"]), int(serves[-1]["pid"])


async def _load(client: Any, api: Api, run: KillRun, stop_at: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.perf_counter() < stop_at:
        method, path, kw = api.recommend(rng, explain=False)
        tally = run.tally()
        try:
            resp = await client.request(method, path, **kw)
            if resp.status_code == 200:
                tally.ok += 1
            else:
                tally.error(f"HTTP {resp.status_code}")
        except Exception as exc:  # every failure is counted, by kind
            tally.error(type(exc).__name__)


async def _feedback(client: Any, api: Api, run: KillRun, stop_at: float) -> None:
    rng = random.Random(7)
    prefix = uuid.uuid4().hex[:8]
    n = 0
    while time.perf_counter() < stop_at:
        events = []
        for _ in range(5):
            n += 1
            events.append({"event_id": f"kill-{prefix}-{n}", "user_id": rng.choice(api.users),
                           "item_id": rng.choice(api.items), "type": "click"})  # fmt: skip
        method, path, kw = Api.feedback(events)
        try:
            resp = await client.request(method, path, **kw)
            ok = resp.status_code == 200
        except Exception:  # not acknowledged: the sender would retry; not counted as lost
            ok = False
        if ok:
            run.acked += [e["event_id"] for e in events]
        else:
            run.refused += len(events)


async def _killer(pid: int, name: str, run: KillRun, after_s: float, t0: float) -> None:
    await asyncio.sleep(after_s)
    os.killpg(pid, signal.SIGKILL)
    run.killed_at = time.perf_counter() - t0
    run.note = f"{name} (process group {pid}) killed with SIGKILL at {run.killed_at:.1f}s"


async def kill_run(target: str, api: Api, stack_dir: Path, clients: int, half_s: float) -> KillRun:
    import httpx

    name, pid = last_replica(stack_dir)
    run = KillRun()
    t0 = time.perf_counter()
    stop_at = t0 + 2 * half_s
    async with httpx.AsyncClient(base_url=target, timeout=60) as client:
        await asyncio.gather(
            _killer(pid, name, run, half_s, t0),
            _feedback(client, api, run, stop_at),
            *(_load(client, api, run, stop_at, seed) for seed in range(clients)),
        )
    return run


def stored_counts(config: Path, event_ids: list[str]) -> dict[str, int]:
    from genre_agent.config import load_config
    from genre_agent.storage.backends import open_interactions

    store = open_interactions(load_config(config))
    try:
        return store.event_counts(event_ids)
    finally:
        store.close()


def report(run: KillRun, counts: dict[str, int]) -> None:
    def errors(t: Tally) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(t.errors.items())) or "0"

    print(f"\nreplica killed mid-run: {run.note}")
    print_table(
        [
            ("before the kill", str(run.before.ok), errors(run.before)),
            ("after the kill", str(run.after.ok), errors(run.after)),
        ],  # fmt: skip
        ("recommend through nginx", "answered 200", "errors"),
    )
    lost = sum(1 for e in run.acked if counts.get(e, 0) == 0)
    twice = sum(1 for e in run.acked if counts.get(e, 0) > 1)
    print()
    print_table(
        [(str(len(run.acked)), str(run.refused), str(lost), str(twice))],
        ("events acknowledged", "not acknowledged", "acknowledged, lost", "stored twice"),
    )


def run_kill(args: Any, api: Api, config: Path) -> None:
    got = asyncio.run(kill_run(args.target, api, args.stack_dir, args.clients, args.duration))
    report(got, stored_counts(config, got.acked))
