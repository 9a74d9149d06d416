"""Time to the ranked list and to the full response with 5 rationales: the "evidence"
rationale format (the sentence "Like <title>, ... ." before issue 19) against the "linked"
format (facts chosen by the service, issue 19), on the same ml-latest-small users, one
process, one engine.

    flock -o /tmp/genre-llm.lock python -m bench.bench_rationales --users 20

Both use ``recommend_stream``: the list first, then the 5 rationales submitted together.
Users run one after another (latency, not throughput); the order of the two formats
alternates per user so neither always has the warmer prefix cache. Prints one table.
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
    configs = {
        "evidence (before)": {
            "ranking.rationale_template": "explain_evidence",
            "ranking.rationale_format": "evidence",
            "ranking.rationale_top_r": args.k,
        },
        "linked": {
            "ranking.rationale_template": "explain_linked",
            "ranking.rationale_format": "linked",
            "ranking.rationale_top_r": args.k,
        },
    }
    recs = {
        name: Recommender(
            load_config(base.config, overrides=over),
            base.store,
            base.interactions,
            llm=base.llm,
            sources=base.sources,
        )
        for name, over in configs.items()
    }
    for rec in recs.values():  # warm: engine, sources, compiled grammars' first use
        list(rec.recommend_stream(user_id=users[0], k=args.k))
    first: dict[str, list[float]] = {n: [] for n in recs}
    full: dict[str, list[float]] = {n: [] for n in recs}
    missing: dict[str, int] = {n: 0 for n in recs}
    names = list(recs)
    for n, user in enumerate(users):
        for name in names if n % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            events = recs[name].recommend_stream(user_id=user, k=args.k)
            next(events)
            first[name].append(time.perf_counter() - t0)
            done = None
            for ev in events:
                done = ev.recommendation or done
            full[name].append(time.perf_counter() - t0)
            if done is not None:
                missing[name] += sum(1 for it in done.items if it.rationale is None)
    a_name, b_name = names
    print(f"| {len(users)} users, k={args.k} | {a_name} | {b_name} |")
    print("|---|---|---|")
    for label, data in (("time to ranked list", first), ("full response", full)):
        for q, qname in ((0.5, "p50"), (0.95, "p95")):
            print(
                f"| {label} {qname} (s) | {pct(data[a_name], q):.2f} | {pct(data[b_name], q):.2f} |"
            )
    a, b = statistics.mean(full[a_name]), statistics.mean(full[b_name])
    print(f"| full response mean (s) | {a:.2f} | {b:.2f} |")
    print(f"| items without a rationale | {missing[a_name]} | {missing[b_name]} |")


if __name__ == "__main__":
    main()
