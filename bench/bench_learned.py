"""Added latency of ``ranking.mode = "learned"`` (no LLM feature) over mode "retrieval".

    python -m bench.bench_learned --users 50 [--train-users 200]

On ml-latest-small (bench/common.py's index, fitted sources): the same users, in the same
process, are served by both modes with ``retrieval.n_candidates`` = 50 and no rationales;
each user is timed twice per mode in alternation (retrieval, learned, retrieval, learned) and
the faster of each pair is kept, so a noisy neighbour hurts both modes alike. The ranker is
trained first if ``models/ranker/`` is missing (``--train-users`` caps its users). Prints one
table: per-request p50/p95 of each mode, their ratio, and the added milliseconds (paired
per user), plus the learned ranker's own stage (features + model).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.common import pct, print_metrics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--train-users", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=Path(".genre/bench"))
    args = ap.parse_args()

    from bench.common import ml_recommender, sample_users
    from genre_agent.ranking.learned import ranker_folder
    from genre_agent.service.learn import fit_ranker
    from genre_agent.service.recommender import Recommender

    common = {"retrieval.n_candidates": args.candidates, "ranking.rationale_top_r": 0}
    base = ml_recommender(args.workdir, **common)
    learned_cfg = base.config.model_copy(
        update={
            "ranking": base.config.ranking.model_copy(
                update={
                    "mode": "learned",
                    "learned": base.config.ranking.learned.model_copy(
                        update={"train_users": args.train_users}
                    ),
                }
            )
        }
    )
    learned = Recommender(learned_cfg, base.store, base.interactions, sources=base.sources)
    if not (ranker_folder(learned_cfg) / "provenance.json").exists():
        t0 = time.perf_counter()
        fit_ranker(learned)
        print(f"trained the ranker on {args.train_users} users in {time.perf_counter() - t0:.0f}s")
    users = sample_users(base, args.users)
    for rec in (base, learned):  # warm-up: sources, catalog, item statistics
        rec.recommend(user_id=users[0], k=args.k)

    ret, lrn, stage = [], [], []
    for u in users:
        r_best, l_best = float("inf"), float("inf")
        for _ in range(2):
            t = time.perf_counter()
            base.recommend(user_id=u, k=args.k)
            r_best = min(r_best, time.perf_counter() - t)
            t = time.perf_counter()
            out = learned.recommend(user_id=u, k=args.k)
            l_best = min(l_best, time.perf_counter() - t)
        ret.append(r_best * 1000)
        lrn.append(l_best * 1000)
        stage.append(out.trace.seconds("learned") * 1000)
        assert out.trace.ranked_by == "learned" and "llm.score" not in out.trace.features
    added = [b - a for a, b in zip(ret, lrn, strict=True)]
    rows = [
        ("users (requests per mode)", str(len(users))),
        ("candidates per request", str(args.candidates)),
        ("features (no LLM)", str(len(out.trace.features))),
        ("retrieval p50 / p95 (ms)", f"{statistics.median(ret):.1f} / {pct(ret, 0.95):.1f}"),
        ("learned p50 / p95 (ms)", f"{statistics.median(lrn):.1f} / {pct(lrn, 0.95):.1f}"),
        ("learned / retrieval (p50)", f"{statistics.median(lrn) / statistics.median(ret):.2f}x"),
        (
            "added p50 / p95 (ms, paired)",
            f"{statistics.median(added):.1f} / {pct(added, 0.95):.1f}",
        ),
        (
            "learned stage p50 / p95 (ms)",
            f"{statistics.median(stage):.1f} / {pct(stage, 0.95):.1f}",
        ),
        ("target: added p95 under", "50 ms"),
    ]
    print_metrics(rows)


if __name__ == "__main__":
    main()
