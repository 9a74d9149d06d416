"""What the simulation measures over many replays (genre_eval.online_sim): the users
needed to separate two variants, and the false-positive rate of two identical ones.

- power(n): the share of ``resamples`` runs on ``n`` users drawn without replacement whose
  test has p < alpha and favours the better variant. A/B: each run re-draws the split (a
  new experiment name re-hashes every user), so each arm has about n/2 users; interleaving:
  each of the n users sees both variants, with fresh coin flips.
- users needed: the smallest n of the grid with power >= 0.8 (and >= 0.5, "most runs").
- A/A: two variants with the same lists, ``runs`` times over every user (a new split or new
  coin flips each run); the false-positive rate is the share of runs with p < alpha.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from genre_agent.experiments.report import ALPHA, ExperimentReport
from genre_eval.online_sim import Population, SimUser, ab_run, experiment, interleave_run

# Bootstrap resamples of a replay's CIs: replays read only the test (the one full report of
# each kind, over every user, keeps the default 2000).
REPLAY_BOOT = 100


def run_ab(
    pop: Population, users: Sequence[SimUser], name: str, a: str, b: str
) -> ExperimentReport:
    return ab_run(pop, users, experiment(name, "ab", [a, b]), REPLAY_BOOT)


def run_il(
    pop: Population, users: Sequence[SimUser], name: str, a: str, b: str
) -> ExperimentReport:
    return interleave_run(pop, users, experiment(name, "interleave", [a, b]), name, REPLAY_BOOT)


KINDS = {"ab": run_ab, "interleave": run_il}


def power_curve(
    pop: Population,
    better: str,
    worse: str,
    ns: Sequence[int],
    resamples: int,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per n: each kind's share of runs that found ``better`` at p < alpha."""
    rows = []
    for n in ns:
        n = min(n, len(pop.users))
        row: dict[str, Any] = {"users": n}
        for kind, run in KINDS.items():
            rng = random.Random(f"{seed}:{kind}:{n}")
            found = 0
            for r in range(resamples):
                users = rng.sample(pop.users, n)
                rep = run(pop, users, f"power-{kind}-{n}-{r}", worse, better)
                found += rep.test.p_value < ALPHA and rep.test.favours == better
            row[kind] = found / resamples
        rows.append(row)
    return rows


def users_needed(rows: Sequence[dict[str, Any]], kind: str, power: float) -> int | None:
    """The smallest n of the grid whose ``kind`` power reaches ``power`` (None: none)."""
    return next((r["users"] for r in rows if r[kind] >= power), None)


def aa_rate(pop: Population, variant: str, kind: str, runs: int) -> dict[str, Any]:
    """False positives of two identical variants over ``runs`` replays on every user."""
    twin = f"{variant}-copy"
    twins = pop.copy_variant(variant, twin)
    p_values = [
        KINDS[kind](twins, pop.users, f"aa-{kind}-{r}", variant, twin).test.p_value
        for r in range(runs)
    ]
    hits = sum(p < ALPHA for p in p_values)
    return {"runs": runs, "false_positives": hits, "rate": hits / runs, "alpha": ALPHA}


def simulate(
    pop: Population,
    better: str,
    worse: str,
    ns: Sequence[int],
    resamples: int,
    aa_runs: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Every number of the simulation (docs/experiments.md), as one JSON-ready dict."""
    ab = ab_run(pop, pop.users, experiment("sim-ab", "ab", [worse, better]))
    il = interleave_run(
        pop, pop.users, experiment("sim-interleave", "interleave", [worse, better]), "full"
    )
    rows = power_curve(pop, better, worse, ns, resamples, seed)
    return {
        "users": len(pop.users),
        "k": pop.k,
        "better": better,
        "worse": worse,
        "ab": ab.model_dump(mode="json"),
        "interleave": il.model_dump(mode="json"),
        "power": rows,
        "resamples": resamples,
        "users_needed": {
            kind: {
                "power_0.8": users_needed(rows, kind, 0.8),
                "power_0.5": users_needed(rows, kind, 0.5),
            }
            for kind in KINDS
        },
        "aa": {kind: aa_rate(pop, better, kind, aa_runs) for kind in KINDS},
    }
