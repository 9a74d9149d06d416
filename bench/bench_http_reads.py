"""Latency of the read and list endpoints on ml-latest-small (9,742 items, 610 users).

    python -m bench.bench_http_reads [--rounds 10] [--workdir DIR]

Each path through FastAPI's TestClient (routing, validation, JSON, no socket), after one
warm-up call, with the hashing embedder and sources that fit in seconds (bench/common.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

PATHS = (
    "/v1/items/1",
    "/v1/items?limit=20",
    "/v1/popular?limit=20",
    "/v1/latest?limit=20",
    "/v1/users/1",
    "/v1/users/1/interactions?limit=20",
    "/v1/users/1/feedback?limit=20",
    "/v1/sessions?limit=20",
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from bench.common import fake_ml_service
    from genre_agent.http import create_app

    work = args.workdir or Path(tempfile.mkdtemp(prefix="genre-bench-reads-"))
    sources = {"embedding": 1.0, "bm25": 1.0, "itemknn": 1.0, "popularity": 0.1}
    svc = fake_ml_service(work, **{"retrieval.sources": sources})
    print(f"{'path':<36} {'first ms':>9} {'median ms':>10} {'max ms':>8}")
    with TestClient(create_app(service=svc), base_url="http://127.0.0.1") as client:
        for path in PATHS:
            t0 = time.perf_counter()
            first = client.get(path)
            first_s = time.perf_counter() - t0
            assert first.status_code in (200, 404), (path, first.text)
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                client.get(path)
                times.append(time.perf_counter() - t0)
            print(
                f"{path:<36} {first_s * 1000:>9.1f} {statistics.median(times) * 1000:>10.1f} "
                f"{max(times) * 1000:>8.1f}"
            )


if __name__ == "__main__":
    main()
