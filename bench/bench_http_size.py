"""Bytes of one HTTP recommendation at each trace weight, on ml-latest-small.

    python -m bench.bench_http_size --users 30 [-k 10] [--workdir DIR]

``GET /v1/recommend/{user}?k=K&trace=...`` for the same users (explain=false: no LLM, so
the bytes are the list and the trace, not rationale words). ``trace=full`` is the shape
every answer had before issue 21 (all candidates and the whole trace); ``summary`` is the
new default (no candidate list, no raw LLM outputs); ``none`` is the items alone. Uses the
hashing embedder (64 dims) so that indexing takes seconds, and sources that fit in seconds;
neither changes the answer's size much (that is n_candidates and k).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=30)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from fastapi.testclient import TestClient

    from bench.common import fake_ml_service
    from genre_agent.http import create_app

    work = args.workdir or Path(tempfile.mkdtemp(prefix="genre-bench-size-"))
    # No trained sources (the sequential model takes minutes): an answer's size depends on
    # n_candidates and k, not on which sources proposed the candidates.
    sources = {"embedding": 1.0, "bm25": 1.0, "itemknn": 1.0, "popularity": 0.1}
    svc = fake_ml_service(work, **{"retrieval.sources": sources})
    rec = svc.rec
    users = list(rec.interactions.users())[: args.users]
    sizes: dict[str, list[int]] = {"full (before)": [], "summary (default)": [], "none": []}
    with TestClient(create_app(service=svc), base_url="http://127.0.0.1") as client:
        for u in users:
            for name in sizes:
                level = name.split()[0]
                got = client.get(f"/v1/recommend/{u}", params={"k": args.k, "trace": level})
                assert got.status_code == 200, got.text
                sizes[name].append(len(got.content))
    print(
        f"{len(users)} users, k={args.k}, n_candidates={rec.config.retrieval.n_candidates}, "
        "explain=false"
    )
    print(f"{'trace':<20} {'median bytes':>13} {'max bytes':>10} {'x full':>7}")
    base = statistics.median(sizes["full (before)"])
    for name, values in sizes.items():
        med = statistics.median(values)
        print(f"{name:<20} {med:>13,.0f} {max(values):>10,} {med / base:>7.2f}")


if __name__ == "__main__":
    main()
