"""Position bias of every system in an eval run: NDCG@10 with the target among the first 5
vs the last 5 label positions (the presented candidate order is the label order).

    python bench/bench_tune.py eval/experiments/ml_small_tuned.toml \
        runs/genre_tune/eval_test

The fusion weight is chosen by ``genre eval search`` (docs/eval.md), which replays cached
label scores, so no separate sweep lives here.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    from genre_agent.ranking.calibration import split_by_position
    from genre_eval.datasets import load_dataset
    from genre_eval.experiment import load_experiment
    from genre_eval.protocols import build_cases, split_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("experiment")
    ap.add_argument("run_dir")
    ap.add_argument("--metric", default="ndcg@10")
    args = ap.parse_args()
    exp = load_experiment(args.experiment)
    ds = split_dataset(load_dataset(exp.dataset), exp.protocol)
    if exp.protocol.kind != "sampled":
        raise SystemExit("position bias is only defined here for the 'sampled' protocol")
    cases = {c.user_id: c for c in build_cases(ds, exp.protocol, exp.split)}  # type: ignore[arg-type]
    rows: dict[str, list[tuple[tuple[str, ...], str, float]]] = defaultdict(list)
    for line in (Path(args.run_dir) / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        case = cases[rec["user_id"]]
        rows[rec["system"]].append((case.candidates, case.target, rec["metrics"][args.metric]))
    print(f"| system | {args.metric} target in first 5 (n) | target in last 5 (n) | gap |")
    print("|---|---|---|---|")
    for system, items in rows.items():
        s = split_by_position(items)
        (f, nf), (lst, nl) = s["first"], s["last"]
        print(
            f"| {system} | {100 * f:.1f} ({nf}) | {100 * lst:.1f} ({nl}) | {100 * (f - lst):+.1f} |"
        )


if __name__ == "__main__":
    main()
