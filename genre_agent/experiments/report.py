"""An experiment's report: per variant exposures, users, rate, MRR and LLM cost with
bootstrap CIs over users, and a test between the variants (docs/experiments.md).

Units: the user is the unit of assignment, so every number is a mean over users of that
user's mean over their impressions (a heavy user counts once), and CIs resample users.
- rate: positives per impression (shown items the user responded to positively).
- mrr: reciprocal rank of the first positive per impression (0 without one).
- A/B: Welch's t of the per-user rates, each variant against the first (the control).
- interleave: per user, the variant that won more of their impressions (a team wins an
  impression with more credited clicks); a two-sided sign test over users who preferred
  one (users with no preference left out), ``statistic`` the first variant's share.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from genre_agent.experiments.config import ExperimentConfig
from genre_agent.experiments.exposures import Joined
from genre_agent.experiments.interleave import credit, outcome
from genre_agent.experiments.stats import bootstrap_diff_ci, bootstrap_mean_ci, sign_test, welch

ALPHA = 0.05


class VariantReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    users: int
    exposures: int
    rate: float
    rate_ci: tuple[float, float]
    mrr: float
    mrr_ci: tuple[float, float]
    llm_tokens: int
    llm_seconds: float


class TestResult(BaseModel):
    """The test between variants; ``favours`` names the better variant when p < alpha."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    statistic: float
    p_value: float
    alpha: float = ALPHA
    favours: str | None = None


class ExperimentReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    experiment: str
    kind: Literal["ab", "interleave"]
    variants: list[VariantReport]
    test: TestResult
    warnings: list[str] = Field(default_factory=list)


def _per_user(values: dict[str, list[float]]) -> list[float]:
    return [sum(v) / len(v) for _, v in sorted(values.items())]


def _variant(
    name: str,
    rates: dict[str, list[float]],
    rrs: dict[str, list[float]],
    cost: tuple[int, float],
    n_boot: int,
) -> VariantReport:
    r, m = _per_user(rates), _per_user(rrs)
    return VariantReport(
        name=name,
        users=len(rates),
        exposures=sum(len(v) for v in rates.values()),
        rate=float(np.mean(r)) if r else 0.0,
        rate_ci=bootstrap_mean_ci(r, n_boot),
        mrr=float(np.mean(m)) if m else 0.0,
        mrr_ci=bootstrap_mean_ci(m, n_boot, seed=1),
        llm_tokens=cost[0],
        llm_seconds=round(cost[1], 6),
    )


def _ab(
    exp: ExperimentConfig, joined: Sequence[Joined], n_boot: int
) -> tuple[list[VariantReport], TestResult]:
    rates: dict[str, dict[str, list[float]]] = {v.name: defaultdict(list) for v in exp.variants}
    rrs: dict[str, dict[str, list[float]]] = {v.name: defaultdict(list) for v in exp.variants}
    cost: dict[str, list[float]] = {v.name: [0, 0.0] for v in exp.variants}
    for j in joined:
        e = j.exposure
        if e.variant not in rates:
            continue
        rank = j.first_positive_rank()
        rates[e.variant][e.user_id].append(float(len(j.positives)))
        rrs[e.variant][e.user_id].append(1.0 / rank if rank else 0.0)
        cost[e.variant][0] += e.llm_tokens
        cost[e.variant][1] += e.llm_seconds
    reports = [
        _variant(
            v.name, rates[v.name], rrs[v.name], (int(cost[v.name][0]), cost[v.name][1]), n_boot
        )
        for v in exp.variants
    ]
    per_user = {n: _per_user(r) for n, r in rates.items()}
    return reports, _welch_tests(exp, per_user, n_boot)


def _welch_tests(
    exp: ExperimentConfig, per_user: dict[str, list[float]], n_boot: int
) -> TestResult:
    control = exp.variants[0].name
    found: list[dict[str, Any]] = []
    for v in exp.variants[1:]:
        a, b = per_user[control], per_user[v.name]
        if len(a) < 2 or len(b) < 2:
            found.append({"variant": v.name, "run": False})
            continue
        t, p = welch(a, b)
        diff = float(np.mean(b) - np.mean(a))
        better = (v.name if diff > 0 else control) if p < ALPHA else None
        found.append(
            {
                "variant": v.name,
                "run": True,
                "statistic": t,
                "p_value": p,
                "difference": diff,
                "difference_ci": list(bootstrap_diff_ci(a, b, n_boot, seed=2)),
                "favours": better,
            }
        )
    first = found[0]
    if not first["run"]:
        return TestResult(
            name="not run: fewer than 2 users in a variant",
            statistic=0.0,
            p_value=1.0,
            metric="rate",
            control=control,
            comparisons=found,
        )
    return TestResult(
        name="welch_t",
        statistic=first["statistic"],
        p_value=first["p_value"],
        favours=first["favours"],
        metric="rate",
        control=control,
        difference=first["difference"],
        difference_ci=first["difference_ci"],
        comparisons=found,
    )


def _interleave(
    exp: ExperimentConfig, joined: Sequence[Joined], n_boot: int
) -> tuple[list[VariantReport], TestResult]:
    a, b = exp.variants[0].name, exp.variants[1].name
    rates: dict[str, dict[str, list[float]]] = {a: defaultdict(list), b: defaultdict(list)}
    rrs: dict[str, dict[str, list[float]]] = {a: defaultdict(list), b: defaultdict(list)}
    margin: dict[str, int] = defaultdict(int)
    counts = {"a": 0, "b": 0, "tie": 0}
    tokens, seconds = 0, 0.0
    for j in joined:
        e = j.exposure
        if e.teams is None:
            continue
        teams = ["a" if t == a else "b" if t == b else "?" for t in e.teams]
        got = credit(teams, e.items, j.positives)
        result = outcome(got)
        counts[result] += 1
        margin[e.user_id] += {"a": 1, "b": -1, "tie": 0}[result]
        for name, team in ((a, "a"), (b, "b")):
            rank = j.first_positive_rank(team=name)
            rates[name][e.user_id].append(float(got[team]))
            rrs[name][e.user_id].append(1.0 / rank if rank else 0.0)
        tokens, seconds = tokens + e.llm_tokens, seconds + e.llm_seconds
    # One impression's cost is both variants' (one list): shown on each, not split.
    reports = [_variant(n, rates[n], rrs[n], (tokens, seconds), n_boot) for n in (a, b)]
    wins = sum(1 for m in margin.values() if m > 0)
    losses = sum(1 for m in margin.values() if m < 0)
    p = sign_test(wins, losses)
    share = wins / (wins + losses) if wins + losses else 0.5
    better = (a if share > 0.5 else b) if p < ALPHA else None
    test = TestResult(
        name="sign_test_users",
        statistic=share,
        p_value=p,
        favours=better,
        users_preferring={a: wins, b: losses},
        users_tied=len(margin) - wins - losses,
        impressions={a: counts["a"], b: counts["b"], "tie": counts["tie"]},
    )
    return reports, test


def build_report(
    exp: ExperimentConfig, joined: Sequence[Joined], n_boot: int = 2000
) -> ExperimentReport:
    """The report of ``exp`` over joined exposures (module doc for every number);
    ``n_boot`` bootstrap resamples per CI (the simulation's replays read only the tests
    and use fewer)."""
    variants, test = (_interleave if exp.kind == "interleave" else _ab)(exp, joined, n_boot)
    warnings = [
        f"variant {v.name!r} has {v.users} users, fewer than min_users = {exp.min_users}: "
        "too few to say anything"
        for v in variants
        if v.users < exp.min_users
    ]
    if exp.kind == "interleave":
        decided = sum(test.model_dump()["users_preferring"].values())
        if decided < exp.min_users:
            warnings.append(
                f"{decided} users preferred one variant (min_users = {exp.min_users}): "
                "too few to say anything"
            )
    return ExperimentReport(
        experiment=exp.name, kind=exp.kind, variants=variants, test=test, warnings=warnings
    )
