"""The replayable online simulation (genre_eval.online_sim, online_power, online_run): end to
end on a small synthetic data set through the real Recommender, and the A/A false-positive
rate of both experiment kinds on synthetic traffic."""

from __future__ import annotations

import json
import random
from pathlib import Path

from genre_eval.experiment import load_experiment
from genre_eval.fixtures import write_jsonl_dataset
from genre_eval.online_power import KINDS, aa_rate, power_curve
from genre_eval.online_run import run_online
from genre_eval.online_sim import Population, SimUser

ALPHA = 0.05


def test_the_simulation_runs_end_to_end_and_both_kinds_find_the_better_config(tmp_path: Path):
    data = write_jsonl_dataset(tmp_path / "data", n_users=60, n_items=40, per_user=12)
    exp = load_experiment(
        {
            "name": "sim-tiny",
            "dataset": {"kind": "jsonl", "path": str(data)},
            "protocol": {"kind": "two-stage", "n_candidates": 20, "users": 60, "min_history": 5},
            "config": {
                "llm": {"engine": "fake"},
                "embedder": {"kind": "fake"},
                "retrieval": {"sources": {"itemknn": 1.0, "bm25": 0.5, "popularity": 0.1}},
            },
            "baselines": ["popularity"],
        }
    )
    out = tmp_path / "out"
    result = run_online(exp, out, ns=(20, 60), resamples=5, aa_runs=10, k=5, echo=lambda _: None)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["users"] == 60 and "| users for power 0.8 |" in (out / "table.md").read_text()
    for kind in ("ab", "interleave"):
        rep = result[kind]
        assert rep["test"]["favours"] == "default", rep["test"]
        by_name = {v["name"]: v for v in rep["variants"]}
        assert by_name["default"]["rate"] > by_name["popularity"]["rate"]
    ab = {v["name"]: v["users"] for v in result["ab"]["variants"]}
    assert sum(ab.values()) == 60 and min(ab.values()) > 0  # the hash split the users
    assert [v["users"] for v in result["interleave"]["variants"]] == [60, 60]
    assert [row["users"] for row in result["power"]] == [20, 60]
    assert set(result["aa"]) == {"ab", "interleave"} and result["aa"]["ab"]["runs"] == 10


def synthetic(n_users: int = 400, n_items: int = 60, k: int = 10, seed: int = 0) -> Population:
    """Users with two held-out items each; variant "x" shows k random items, "good" puts
    one held-out item first for a third of the users."""
    rng = random.Random(seed)
    items = [str(i) for i in range(n_items)]
    users, x, good = [], {}, {}
    for u in range(n_users):
        uid = f"u{u}"
        held = frozenset(rng.sample(items, 2))
        users.append(SimUser(uid, held))
        x[uid] = rng.sample(items, k)
        shown = rng.sample(items, k)
        if u % 3 == 0:
            first = sorted(held)[0]
            shown = [first, *[i for i in shown if i != first]][:k]
        good[uid] = shown
    return Population(users, {"x": x, "good": good}, k)


def test_identical_variants_are_found_different_at_most_about_alpha_of_the_time():
    pop = synthetic(n_users=200)
    runs = 200
    # alpha plus three binomial standard errors: a correct test fails this about once in
    # 700 draws, and the seeds are fixed.
    ceiling = ALPHA + 3 * (ALPHA * (1 - ALPHA) / runs) ** 0.5
    for kind in ("ab", "interleave"):
        got = aa_rate(pop, "x", kind, runs)
        assert got["runs"] == runs
        assert got["rate"] <= ceiling, (kind, got)


def test_the_aa_check_catches_variants_that_differ():
    """The known-bad case: "good" and "x" are not identical, so calling them an A/A pair
    must show far more than alpha 'false' positives."""
    pop = synthetic()
    bad = Population(pop.users, {"x": pop.lists["x"], "x-copy": pop.lists["good"]}, pop.k)

    for kind, run in KINDS.items():
        hits = sum(
            run(bad, bad.users, f"bad-{kind}-{r}", "x", "x-copy").test.p_value < ALPHA
            for r in range(20)
        )
        assert hits >= 15, kind


def test_interleaving_needs_fewer_users_than_ab_on_the_same_traffic():
    pop = synthetic()
    rows = power_curve(pop, "good", "x", [40, 120], resamples=30)
    assert rows[-1]["interleave"] >= 0.8
    assert all(r["interleave"] >= r["ab"] for r in rows), rows
