"""Benchmark the HTTP fast path (explain=false) on ml-latest-small, against the direct call.

    python -m bench.bench_http --users 30 [--workdir DIR]

Rows, all on the same users in the same process (so their ratios are comparable on a noisy
machine): the Recommender's no-LLM ``recommend`` called directly; the same through
``GET /v1/recommend/{user}?explain=false`` (FastAPI's TestClient: routing, validation,
JSON, no socket); and the evidence step alone for every candidate (what the retrieval
order computed before) and for the returned top k only (what it computes now).

Uses the hashing embedder (64 dims) so that indexing takes seconds, not minutes; with the
default 384-dim embedder the evidence step costs more, so its share is understated here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.bench_recommend import pct


def _time(fn: Callable[[str], object], users: list[str]) -> list[float]:
    fn(users[0])  # warm-up (sources built, caches filled)
    out = []
    for u in users:
        t0 = time.perf_counter()
        fn(u)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from bench.common import fake_ml_service
    from genre_agent.http import create_app
    from genre_agent.service.requests import RecRequest

    work = args.workdir or Path(tempfile.mkdtemp(prefix="genre-bench-http-"))
    svc = fake_ml_service(work)
    rec = svc.rec
    users = list(rec.interactions.users())[: args.users]
    k = args.k

    def evidence(top: int | None) -> Callable[[str], object]:
        def run(u: str) -> object:
            out = svc.fast.recommend(user_id=u, k=k)
            cands = sorted(out.trace.candidates, key=lambda c: -c.score)[:top]
            req = RecRequest(user_id=u)
            t0 = time.perf_counter()
            rec.with_evidence(cands, req)
            return time.perf_counter() - t0

        return run

    rows: dict[str, list[float]] = {}
    # 127.0.0.1: a Host in service.allowed_hosts (TestClient says "testserver" otherwise).
    with TestClient(create_app(service=svc), base_url="http://127.0.0.1") as client:
        rows["direct Recommender (no LLM)"] = _time(
            lambda u: svc.fast.recommend(user_id=u, k=k), users
        )
        rows["GET /v1/recommend explain=false"] = _time(
            lambda u: client.get(f"/v1/recommend/{u}", params={"k": k, "explain": "false"}),
            users,
        )
        # Inside the block: leaving it closes the service's stores.
        for name, top in (("evidence, all candidates (before)", None), (f"evidence, top {k}", k)):
            run = evidence(top)
            run(users[0])
            rows[name] = [float(run(u)) for u in users]  # type: ignore[arg-type]
    base = statistics.median(rows["direct Recommender (no LLM)"])
    print(f"{len(users)} users, k={k}, n_candidates={rec.config.retrieval.n_candidates}")
    print(f"{'path':<40} {'median ms':>10} {'p90 ms':>8} {'x direct':>9}")
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"{name:<40} {med * 1000:>10.1f} {pct(values, 0.9) * 1000:>8.1f} {med / base:>9.2f}")


if __name__ == "__main__":
    main()
