"""Throughput and latency of the ranking modes on the same MovieLens users and candidates.

Every mode ranks the same users: candidates are the user's held-out last liked movie plus
19 random unseen movies (fixed seed), in a seeded random order, all with retrieval score 0.
Throughput: all users in one batched ``rank_many`` call. Latency: single-user calls on the
first ``--latency-users`` users (p50). HR@10: share of users whose held-out movie is ranked
in the top 10 (a sanity check, not an evaluation; random is 0.5). vLLM's prefix cache is
emptied before each measured run and each latency call, so no mode reuses another's prompts;
reuse *within* a run (the shared system prompt, a user's history across permutations) counts.

    python bench/bench_ranking_modes.py [--users 50]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

# Relative to the repo root, where bench scripts are run; GENRE_DEMO_DATA overrides it.
DATA = Path(os.environ.get("GENRE_DEMO_DATA", "../shared/data/ml-latest-small"))


def build_requests(data: Path, n_users: int, n_cands: int, seed: int, history_len: int):
    from genre_agent.catalog.items import load_movielens_items
    from genre_agent.ranking.base import RankRequest
    from genre_agent.storage.interactions import read_interactions, time_ordered
    from genre_agent.types import Candidate

    items = {it.id: it for it in load_movielens_items(data)}
    by_user = defaultdict(list)
    for row in read_interactions(data):
        by_user[row.user_id].append(row)
    rng = random.Random(seed)
    users = sorted(u for u, rows in by_user.items() if len(rows) >= 20)
    rng.shuffle(users)
    all_ids = sorted(items)
    out = []
    for user in users:
        rows = time_ordered(by_user[user], seed)
        liked = [r for r in rows if (r.rating or 0) >= 3.5 and r.item_id in items]
        if len(liked) < 2:
            continue
        target = liked[-1].item_id
        history = [items[r.item_id] for r in liked[:-1]][-history_len:]
        seen = {r.item_id for r in rows}
        negatives: list[str] = []
        while len(negatives) < n_cands - 1:
            cand = rng.choice(all_ids)
            if cand not in seen and cand not in negatives:
                negatives.append(cand)
        ids = [target, *negatives]
        rng.shuffle(ids)
        cands = [Candidate(item=items[i], score=0.0, source="random") for i in ids]
        out.append((target, RankRequest(candidates=cands, history=history, k=10)))
        if len(out) >= n_users:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--latency-users", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--engine", default="vllm")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--no-prefix-caching", action="store_true")
    ap.add_argument(
        "--compare-prefix-caching",
        action="store_true",
        help="afterwards, reload the engine with prefix caching off and rerun --off-modes",
    )
    ap.add_argument("--off-modes", default="scoring,scoring_b3")
    ap.add_argument(
        "--modes",
        default="listwise,scoring,scoring_b3,scoring_r3",
        help="comma list of: listwise, scoring, scoring_b3, scoring_r3",
    )
    args = ap.parse_args()

    from genre_agent.config import LLMConfig, RankingConfig
    from genre_agent.llm.registry import clear_engines, get_engine
    from genre_agent.ranking import make_ranker

    reqs = build_requests(DATA, args.users, args.candidates, args.seed, args.history)
    cfg = LLMConfig(
        engine=args.engine, model=args.model, enable_prefix_caching=not args.no_prefix_caching
    )
    llm = get_engine(cfg, announce=print)
    # The original listwise ranker writes ids and rationales in one answer ("inline").
    inline = {"listwise_style": "inline"} if "listwise_style" in RankingConfig.model_fields else {}
    modes = {
        "listwise": RankingConfig(mode="listwise", k=10, **inline),
        "scoring": RankingConfig(mode="scoring", k=10),
        "scoring_b3": RankingConfig(mode="scoring", k=10, permutations=3),
        "scoring_r3": RankingConfig(mode="scoring", k=10, rationale_top_r=3),
    }
    labels = {
        "listwise": "listwise generation (k=10, rationales)",
        "scoring": "scoring",
        "scoring_b3": "scoring, B=3 permutations",
        "scoring_r3": "scoring + rationales top 3",
    }
    batch = [r for _, r in reqs]

    def cold(llm) -> None:
        """No prompt reuse across measurements: modes share prompts (scoring_b3's first order
        and scoring_r3's scoring pass are scoring's prompts), and latency users were just run."""
        reset = getattr(llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()

    def run_mode(name: str, llm) -> tuple[str, float, float, float]:
        ranker = make_ranker(llm, modes[name])
        ranker.rank_many(batch[-1:])  # warm-up (structured-output compile)
        cold(llm)
        t0 = time.perf_counter()
        results = ranker.rank_many(batch)
        wall = time.perf_counter() - t0
        lat = []
        for r in batch[: args.latency_users]:
            cold(llm)
            t1 = time.perf_counter()
            ranker.rank_many([r])
            lat.append(time.perf_counter() - t1)
        hits = sum(
            target in [it.item.id for it in items[:10]]
            for (target, _), (items, _) in zip(reqs, results, strict=True)
        )
        print(f"done {name}: {wall:.1f}s for {len(batch)} users", flush=True)
        return (name, len(batch) / wall * 60, statistics.median(lat), hits / len(batch))

    rows = [run_mode(name, llm) for name in args.modes.split(",")]
    off_rows = []
    if args.compare_prefix_caching and not args.no_prefix_caching:
        clear_engines()
        off_cfg = cfg.model_copy(update={"enable_prefix_caching": False})
        llm_off = get_engine(off_cfg, announce=print)
        off_rows = [run_mode(name, llm_off) for name in args.off_modes.split(",")]
        clear_engines()

    base = next((r for r in rows if r[0] == "listwise"), None)
    print()
    print(
        f"engine={args.engine} model={args.model} users={len(reqs)} "
        f"candidates={args.candidates} prefix_caching={not args.no_prefix_caching}"
    )
    head = f"{'mode':<40} {'users/min':>10} {'p50 s':>8} {'x listwise':>11} {'HR@10':>6}"
    print(head)
    print("-" * len(head))
    for name, upm, p50, hr in rows:
        ratio = f"{upm / base[1]:.1f}x" if base else "-"
        print(f"{labels[name]:<40} {upm:>10.1f} {p50:>8.2f} {ratio:>11} {hr:>6.2f}")
    if off_rows:
        on = {r[0]: r for r in rows}
        print()
        print("prefix caching: same users, same engine settings otherwise, one run")
        head2 = f"{'mode':<40} {'on u/min':>9} {'off u/min':>10} {'on/off':>7}"
        print(head2)
        print("-" * len(head2))
        for name, upm, _p50, _hr in off_rows:
            print(f"{labels[name]:<40} {on[name][1]:>9.1f} {upm:>10.1f} {on[name][1] / upm:>6.2f}x")


if __name__ == "__main__":
    main()
