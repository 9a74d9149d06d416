"""Benchmark the no-LLM `recommend` (what `genre serve` answers for explain=false), before/after.

    python -m bench.bench_fast_path --baseline /tmp/genre-main --users 30 --rounds 3

``--baseline`` is a checkout of the code to compare against (e.g. ``git archive main | tar
-x -C /tmp/genre-main``). Each round runs one worker process per code version, alternating,
over the same store (``--workdir``, ml-latest-small as bench.common builds it) and the same
users; a worker times one in-process ``recommend(user_id=...)`` per user after a warm-up.
Prints one table: ms per request (mean, p50, p95) per version, the ratio baseline / this
code, and whether both returned the same ids, order and scores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def worker(workdir: Path, n_users: int, warmup: int) -> None:
    """One process: time the fast path per user; print JSON (ms, results) on stdout."""
    from bench.common import sample_users
    from genre_agent.config import load_config
    from genre_agent.http.service import fast_config
    from genre_agent.service.recommender import Recommender

    # The store as bench.common.ml_recommender (or bench.bench_service) built it, read as is.
    store = {
        "kind": "embedded",
        "path": str(workdir / "chroma"),
        "interactions_path": str(workdir / "interactions.sqlite"),
        "collection": "ml_latest_small",
    }
    rec = Recommender.from_config(load_config({"store": store}))
    fast = Recommender(fast_config(rec.config), rec.store, rec.interactions, sources=rec.sources)
    users = sample_users(rec, n_users + warmup)
    for u in users[:warmup]:
        fast.recommend(user_id=u)
    ms: list[float] = []
    results: dict[str, list[tuple[str, float | None]]] = {}
    for u in users[warmup:]:
        t0 = time.perf_counter()
        got = fast.recommend(user_id=u)
        ms.append((time.perf_counter() - t0) * 1000)
        results[u] = [(it.item.id, it.score) for it in got.items]
    json.dump({"ms": ms, "results": results}, sys.stdout)


def run(code: Path, args: argparse.Namespace) -> dict:
    from bench.common import DATA

    env = {**os.environ, "PYTHONPATH": str(code), "GENRE_DEMO_DATA": str(DATA)}
    # This file by path, the imports (genre_agent, bench.common) from ``code``.
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    cmd += ["--workdir", str(args.workdir), "--users", str(args.users)]
    cmd += ["--warmup", str(args.warmup)]
    out = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"worker for {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def same(a: dict, b: dict, tol: float = 1e-9) -> bool:
    if a.keys() != b.keys():
        return False
    for u in a:
        if [i for i, _ in a[u]] != [i for i, _ in b[u]]:
            return False
        for (_, x), (_, y) in zip(a[u], b[u], strict=True):
            if (x is None) != (y is None) or (x is not None and abs(x - y) > tol * max(1, abs(x))):
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=Path, help="a checkout of the code to compare against")
    ap.add_argument("--workdir", type=Path, default=Path(".genre/bench"))
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.workdir = args.workdir.resolve()
    if args.worker:
        worker(args.workdir, args.users, args.warmup)
        return

    versions = {"this code": ROOT}
    if args.baseline:
        versions = {"baseline": args.baseline.resolve(), **versions}
    ms: dict[str, list[float]] = {v: [] for v in versions}
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, code in versions.items():
            got = run(code, args)
            ms[name].extend(got["ms"])
            results[name] = got["results"]

    load = os.getloadavg()
    print(
        f"no-LLM recommend, {args.users} users x {args.rounds} rounds, in-process "
        f"(load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, {os.cpu_count()} cores)"
    )
    print(f"{'code':<10} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'speed-up (mean)':>16}")
    base = statistics.fmean(ms["baseline"]) if "baseline" in ms else None
    for name, values in ms.items():
        mean = statistics.fmean(values)
        ratio = f"{base / mean:.2f}x" if base else "-"
        print(
            f"{name:<10} {mean:>8.1f} {pct(values, 0.5):>8.1f} {pct(values, 0.95):>8.1f} "
            f"{ratio:>16}"
        )
    if "baseline" in results:
        ok = same(results["baseline"], results["this code"])
        print(f"identical results (ids, order, scores): {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
