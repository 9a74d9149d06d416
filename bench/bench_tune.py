"""Position bias of every system in an eval run: NDCG@10 with the target among the first 5
vs the last 5 label positions (the presented candidate order is the label order).

    /work/venv/bin/python bench/bench_tune.py eval/experiments/ml_small_tuned.toml \
        /work/reports/genre_tune/eval_test [--fusion-from tuned --weights 0.1,0.3,0.5,0.7,0.9]

``--fusion-from SYSTEM`` also replays that system's stored rankings through the harness's
fusion (weighted RRF with the fusion retriever, as a variant's ``fusion_weight`` does) for
several weights, with bootstrap 95% CIs: no model is run, the same users and candidates.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    from genre_agent.eval.datasets import load_dataset
    from genre_agent.eval.experiment import load_experiment
    from genre_agent.eval.protocols import build_cases

    from genre_agent.calibration import split_by_position

    ap = argparse.ArgumentParser()
    ap.add_argument("experiment")
    ap.add_argument("run_dir")
    ap.add_argument("--metric", default="ndcg@10")
    ap.add_argument("--fusion-from", default=None)
    ap.add_argument("--weights", default="0.1,0.3,0.5,0.7,0.9")
    args = ap.parse_args()
    exp = load_experiment(args.experiment)
    ds = load_dataset(exp.dataset)
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

    if args.fusion_from:
        fusion_sweep(args, exp)


def fusion_sweep(args: argparse.Namespace, exp: object) -> None:
    from genre_agent.eval.metrics import order_by_scores, user_metrics
    from genre_agent.eval.runner import prepare, read_results
    from genre_agent.eval.stats import bootstrap_ci
    from genre_agent.retrievers.fusion import ranks_of, rrf

    prep = prepare(exp)  # type: ignore[arg-type]
    cases = {c.user_id: c for c in prep.cases}
    recs = [r for r in read_results(args.run_dir) if r["system"] == args.fusion_from]
    k = int(args.metric.split("@")[1])
    print(f"\n| fusion of {args.fusion_from} (w = fusion share) | {args.metric} [95% CI] |")
    print("|---|---|")
    for w in [float(x) for x in args.weights.split(",")]:
        vals = []
        for rec in recs:
            case = cases[rec["user_id"]]
            fusion = prep.suite.scores("fusion", case)
            fused = rrf(
                [
                    {i: r for r, i in enumerate(rec["ranked"], start=1)},
                    ranks_of(list(fusion.values()), list(fusion)),
                ],
                [1 - w, w],
            )
            ranked = order_by_scores({c: fused.get(c, 0.0) for c in case.candidates})
            m = user_metrics(ranked, {case.target}, case.candidates, [k])
            vals.append(m[args.metric])
        ci = bootstrap_ci(vals)
        print(f"| w = {w:.1f} | {100 * ci.mean:.1f} [{100 * ci.low:.1f}, {100 * ci.high:.1f}] |")


if __name__ == "__main__":
    main()
