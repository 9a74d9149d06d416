"""`genre eval online`: the simulation of genre_eval.online_sim on an experiment's data,
written as summary.json (aggregates only: no per-user rows) and a markdown table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genre_eval.experiment import Experiment
from genre_eval.online_power import simulate
from genre_eval.online_sim import SIM_VARIANTS, rank_population, sim_experiment
from genre_eval.prepared import prepare, protocol_overrides

DEFAULT_NS = (25, 50, 100, 150, 200, 300, 400, 500, 610)


def run_online(
    exp: Experiment,
    out_dir: Path,
    *,
    ns: Sequence[int] = DEFAULT_NS,
    resamples: int = 100,
    aa_runs: int = 200,
    k: int = 10,
    overrides: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Rank every eligible user with both variants once, then replay the experiments."""
    t0 = time.perf_counter()
    prepared = prepare(exp, split="test", overrides=overrides)
    base = exp.base_config({**protocol_overrides(exp), **(overrides or {})})
    cfg = sim_experiment(base, SIM_VARIANTS, "sim")
    users = [c.user_id for c in prepared.cases]
    echo(f"{len(users)} simulated users; ranking them with {list(SIM_VARIANTS)}")
    pop = rank_population(prepared.world, cfg, users, k=k)
    t_rank = time.perf_counter() - t0
    result = simulate(pop, "default", "popularity", ns, resamples, aa_runs)
    result.update(
        experiment=exp.name,
        dataset=prepared.ds.name,
        dataset_sha256=prepared.ds.sha256,
        variants={n: o for n, o in SIM_VARIANTS.items()},
        config_sha256=base.fingerprint(),
        seconds={"rank": round(t_rank, 1), "total": round(time.perf_counter() - t0, 1)},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / "table.md").write_text(markdown(result), encoding="utf-8")
    return result


def _ci(v: dict[str, Any], key: str) -> str:
    lo, hi = v[f"{key}_ci"]
    return f"{v[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(r: dict[str, Any]) -> str:
    """The tables of docs/experiments.md from a summary."""
    lines = [
        f"{r['users']} simulated users, top {r['k']} shown once each.",
        "",
        "| experiment | variant | users | rate (positives/impression) | MRR | test | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("ab", "interleave"):
        rep = r[kind]
        t = rep["test"]
        for n, v in enumerate(rep["variants"]):
            test = f"{t['name']} {t['statistic']:.3f}" if n == 0 else ""
            p = f"{t['p_value']:.2g} (favours {t['favours']})" if n == 0 else ""
            lines.append(
                f"| {kind} | {v['name']} | {v['users']} | {_ci(v, 'rate')} | {_ci(v, 'mrr')} "
                f"| {test} | {p} |"
            )
    lines += [
        "",
        f"Power over {r['resamples']} resamples (share with p < 0.05 for the better):",
        "",
    ]
    lines += ["| users | A/B | interleaving |", "|---|---|---|"]
    lines += [
        f"| {row['users']} | {row['ab']:.2f} | {row['interleave']:.2f} |" for row in r["power"]
    ]
    need = r["users_needed"]
    lines += [
        "",
        "| | A/B | interleaving |",
        "|---|---|---|",
        f"| users for power 0.5 | {need['ab']['power_0.5']} | {need['interleave']['power_0.5']} |",
        f"| users for power 0.8 | {need['ab']['power_0.8']} | {need['interleave']['power_0.8']} |",
    ]
    aa = r["aa"]
    lines += [
        f"| A/A false positives (alpha 0.05) | {aa['ab']['false_positives']}/{aa['ab']['runs']}"
        f" = {aa['ab']['rate']:.3f} | {aa['interleave']['false_positives']}/"
        f"{aa['interleave']['runs']} = {aa['interleave']['rate']:.3f} |",
        "",
    ]
    return "\n".join(lines)
