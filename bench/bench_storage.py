"""The user-data stores on SQLite and PostgreSQL: ml-latest-small's ratings loaded, read
back and fingerprinted, plus feedback writes and history reads, on each backend.

    python -m bench.bench_storage --database-url postgresql://genre@127.0.0.1:5432/bench

The database should be empty (a fresh one per run); numbers depend on its fsync setting.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import DATA, pct
from genre_agent.config import Config
from genre_agent.service.feedback import FeedbackEvent, record_feedback
from genre_agent.storage.backends import open_interactions
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.interactions import read_interactions


def measure(store: InteractionBackend, rows: list, events: int) -> dict[str, str]:
    out: dict[str, str] = {}
    t = time.perf_counter()
    store.add(rows)
    out["load ratings (s)"] = f"{time.perf_counter() - t:.2f}"
    t = time.perf_counter()
    out["fingerprint"] = store.fingerprint()[:12]
    out["fingerprint (s)"] = f"{time.perf_counter() - t:.2f}"
    users = sorted({r.user_id for r in rows})[:200]
    times: list[float] = []
    for u in users:
        t = time.perf_counter()
        store.history(u)
        times.append((time.perf_counter() - t) * 1000)
    out["history p50 / p95 (ms)"] = f"{pct(times, 0.5):.2f} / {pct(times, 0.95):.2f}"
    times = []
    for i in range(events):
        ev = FeedbackEvent(
            event_id=f"b{i}", user_id=users[i % len(users)], item_id="1", type="like"
        )
        t = time.perf_counter()
        record_feedback(store, [ev])
        times.append((time.perf_counter() - t) * 1000)
    out["feedback event p50 / p95 (ms)"] = f"{pct(times, 0.5):.2f} / {pct(times, 0.95):.2f}"
    t = time.perf_counter()
    store.item_counts()
    out["item_counts after events (ms)"] = f"{(time.perf_counter() - t) * 1000:.1f}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--events", type=int, default=300)
    args = ap.parse_args()
    rows = read_interactions(DATA)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = open_interactions(
            Config.model_validate({"store": {"interactions_path": str(Path(tmp) / "i.sqlite")}})
        )
        results["sqlite"] = measure(sqlite, rows, args.events)
        sqlite.close()
    pg = open_interactions(Config.model_validate({"store": {"database_url": args.database_url}}))
    results["postgres"] = measure(pg, rows, args.events)
    pg.close()
    print(f"{len(rows)} ratings ({DATA.name}), {args.events} feedback events, one at a time")
    keys = list(results["sqlite"])
    width = max(len(k) for k in keys)
    print(f"{'metric'.ljust(width)} | sqlite | postgres")
    print(f"{'-' * width}-|--------|---------")
    for k in keys:
        print(f"{k.ljust(width)} | {results['sqlite'][k]} | {results['postgres'][k]}")


if __name__ == "__main__":
    main()
