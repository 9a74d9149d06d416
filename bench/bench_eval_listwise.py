"""Users/min and quality of the eval harness's listwise variants on ml-latest-small.

Runs only the LLM variants of an experiment (no baselines) into a fresh directory, without
the response cache being pre-filled, and prints NDCG@10 and users/min per variant.

    python bench/bench_eval_listwise.py --users 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

EXPERIMENT = Path(__file__).resolve().parents[1] / "eval/experiments/ml_small_protocol_a.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=EXPERIMENT)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], help="config override k=v")
    args = parser.parse_args()

    from genre_eval.cli import _overrides
    from genre_eval.experiment import load_experiment
    from genre_eval.runner import Runner
    from genre_eval.summary import summarize_prepared

    exp = load_experiment(args.experiment)
    exp = exp.model_copy(
        update={
            "baselines": [],
            "protocol": exp.protocol.model_copy(update={"users": args.users}),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runner = Runner(exp, tmp, _overrides(args.set))
        runner.run()
        summary = summarize_prepared(tmp, runner.prepared)
        wall = time.perf_counter() - t0
    for name, e in summary["systems"].items():
        m = e["metrics"][exp.primary]
        print(
            f"{name}: {exp.primary} {m['mean']:.4f} [{m['low']:.4f}, {m['high']:.4f}] "
            f"users/min {e['users_per_min']:.1f} fail {e['failure_rate']:.3f} "
            f"tokens {e['prompt_tokens_per_request']:.0f}+{e['completion_tokens_per_request']:.0f}"
        )
    print(f"total wall {wall:.1f}s for {summary['users']} users (includes model load)")


if __name__ == "__main__":
    main()
