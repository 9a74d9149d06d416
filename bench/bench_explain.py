"""Time to the ranked list and to the full response: the old two_phase path against the
evidence path, on the same ml-latest-small users, in one process and one engine.

    python -m bench.bench_explain --users 20

- ``two_phase``: the listwise LLM ranks 50 candidates to 5, then writes a free-format
  rationale per pick (explain_item); the list exists only after the LLM ranking.
- ``evidence``: the shipped default. The fused sources rank, evidence is computed, and
  ``recommend_stream`` yields the list at once, then one evidence-grounded rationale per
  top-5 item (explain_evidence), all submitted together.

Users run one after another (latency, not throughput); the prefix cache is warm for both
paths after the first request. Prints one table; the ratio column compares the two paths of
the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.common import pct


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path(".genre/bench"))
    args = ap.parse_args()

    from bench.common import ml_recommender, sample_users
    from genre_agent.config import load_config
    from genre_agent.service.recommender import Recommender

    base = ml_recommender(args.workdir)
    users = sample_users(base, args.users)
    llm = base.llm
    configs = {
        "two_phase": {
            "ranking.mode": "listwise",
            "ranking.listwise_style": "two_phase",
            "ranking.rationale_template": "explain_item",
            "ranking.rationale_format": "free",
            "ranking.max_rationale_chars": 120,
        },
        "evidence": {"ranking.rationale_top_r": args.k},
    }
    recs = {
        name: Recommender(
            load_config(base.config, overrides=over),
            base.store,
            base.interactions,
            llm=llm,
            sources=base.sources,
        )
        for name, over in configs.items()
    }
    base.recommend(user_id=users[0], k=args.k)  # warm: engine, sources, prefix cache
    first: dict[str, list[float]] = {n: [] for n in recs}
    full: dict[str, list[float]] = {n: [] for n in recs}
    for user in users:
        for name, rec in recs.items():
            t0 = time.perf_counter()
            if name == "evidence":
                events = rec.recommend_stream(user_id=user, k=args.k)
                next(events)
                first[name].append(time.perf_counter() - t0)
                for _ in events:
                    pass
            else:
                out = rec.recommend(user_id=user, k=args.k)
                first[name].append(
                    sum(out.trace.seconds(s) for s in ("retrieve", "render", "llm_rank"))
                )
            full[name].append(time.perf_counter() - t0)
    print(f"| {len(users)} users, k={args.k} | two_phase | evidence | evidence / two_phase |")
    print("|---|---|---|---|")
    for label, data in (("time to ranked list", first), ("full response", full)):
        for q, qname in ((0.5, "p50"), (0.95, "p95")):
            a, b = pct(data["two_phase"], q), pct(data["evidence"], q)
            print(f"| {label} {qname} (s) | {a:.2f} | {b:.2f} | {b / a:.2f} |")
    a, b = statistics.mean(full["two_phase"]), statistics.mean(full["evidence"])
    print(f"| full response mean (s) | {a:.2f} | {b:.2f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
