"""genre_agent.experiments: config and overlays, assignment, team-draft interleaving, the
join of exposures with feedback, and the report's numbers and tests."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from genre_agent.config import load_config, variant_config
from genre_agent.errors import ConfigError
from genre_agent.experiments.assign import assign, bucket
from genre_agent.experiments.config import ExperimentConfig
from genre_agent.experiments.exposures import Exposure, Signal, join
from genre_agent.experiments.interleave import credit, outcome, team_draft
from genre_agent.experiments.report import build_report


def exp_cfg(**kw):
    spec = {
        "name": "e1",
        "variants": [
            {"name": "control", "share": 0.5},
            {"name": "pop", "share": 0.5, "overlay": {"ranking": {"k": 5}}},
        ],
    }
    spec.update(kw)
    return spec


def config_with(*experiments):
    return load_config({"service": {"experiments": list(experiments)}}, use_env=False)


# -- config ----------------------------------------------------------------------------------
def test_an_overlay_is_merged_onto_the_base_config():
    cfg = config_with(
        exp_cfg(
            variants=[
                {"name": "a", "share": 0.5},
                {"name": "b", "share": 0.5, "overlay": {"retrieval": {"sources": {"bm25": 0}}}},
            ]
        )
    )
    b = variant_config(cfg, "e1", "b")
    assert b.retrieval.sources["bm25"] == 0
    assert b.retrieval.sources["itemknn"] == cfg.retrieval.sources["itemknn"]
    assert b.service.experiments == ()
    assert variant_config(cfg, "e1", "a").retrieval == cfg.retrieval


@pytest.mark.parametrize(
    ("variants", "kind", "says"),
    [
        (
            [{"name": "a"}, {"name": "b", "overlay": {"ranking": {"mode": "nope"}}}],
            "ab",
            "service.experiments['e1'].variants['b'].overlay: ranking.mode: Input should be",
        ),
        (
            [{"name": "a"}, {"name": "b", "overlay": {"ranking": {"kk": 1}}}],
            "ab",
            "variants['b'].overlay: ranking.kk: unknown key",
        ),
        (
            [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}],
            "ab",
            "variant shares must sum to 1, got 0.9",
        ),
        ([{"name": "a"}, {"name": "b"}, {"name": "c"}], "interleave", "exactly two variants"),
        ([{"name": "a"}, {"name": "a"}], "ab", "variant names repeat"),
        (
            [{"name": "a"}, {"name": "b", "overlay": {"store": {"kind": "memory"}}}],
            "ab",
            "overlay section 'store' cannot differ",
        ),
    ],
)
def test_a_bad_experiment_is_a_config_error_that_says_where(variants, kind, says):
    with pytest.raises(ConfigError) as err:
        config_with(exp_cfg(variants=variants, kind=kind))
    assert says in str(err.value)


def test_two_experiments_with_one_name_are_refused():
    with pytest.raises(ConfigError, match="names repeat"):
        config_with(exp_cfg(), exp_cfg())


# -- assignment ------------------------------------------------------------------------------
def test_assignment_is_stable_across_processes():
    users = [f"user{i}" for i in range(20)]
    here = [bucket("e1", u) for u in users]
    code = (
        "from genre_agent.experiments.assign import bucket;"
        f"print([bucket('e1', u) for u in {users!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert eval(out.stdout) == here
    assert all(0 <= b < 1 for b in here)


def test_assignment_splits_traffic_near_the_shares():
    exp = ExperimentConfig.model_validate(
        exp_cfg(
            variants=[
                {"name": "a", "share": 0.2},
                {"name": "b", "share": 0.3},
                {"name": "c", "share": 0.5},
            ]
        )
    )
    n = 20_000
    got = [assign(exp, f"u{i}").name for i in range(n)]
    for name, share in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        # 4.5 standard errors: a correct hash fails this about once in 150,000 runs.
        assert abs(got.count(name) / n - share) < 4.5 * np.sqrt(share * (1 - share) / n)
    # A different experiment name reshuffles users (independent assignments).
    other = ExperimentConfig.model_validate({**exp.model_dump(), "name": "e2"})
    same = sum(assign(other, f"u{i}").name == got[i] for i in range(n)) / n
    assert abs(same - (0.2**2 + 0.3**2 + 0.5**2)) < 0.02


# -- team-draft interleaving -----------------------------------------------------------------
class Coins(random.Random):
    """A random source whose draws are scripted: < 0.5 means team a picks first."""

    def __init__(self, draws):
        super().__init__(0)
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0)


def test_team_draft_on_known_lists():
    a = ["1", "2", "3", "4"]
    b = ["2", "5", "1", "6"]
    # Round 1: a first (takes 1), then b (takes 2). Round 2: b first (takes 5), a (takes 3).
    got = team_draft(a, b, 4, Coins([0.1, 0.9]))
    assert got.items == ["1", "2", "5", "3"]
    assert got.teams == ["a", "b", "b", "a"]
    # b first: b takes 2, a takes 1; then a first: a takes 3, b takes 5.
    got = team_draft(a, b, 4, Coins([0.9, 0.1]))
    assert got.items == ["2", "1", "3", "5"]
    assert got.teams == ["b", "a", "a", "b"]


def test_team_draft_keeps_going_when_one_list_runs_out():
    got = team_draft(["1"], ["2", "3", "4"], 4, Coins([0.1, 0.1]))
    assert got.items == ["1", "2", "3", "4"]
    assert got.teams == ["a", "b", "b", "b"]
    assert team_draft(["1"], ["1"], 5, Coins([0.1])).items == ["1"]


def test_identical_lists_interleave_to_the_same_list_with_fair_teams():
    ranked = [str(i) for i in range(10)]
    got = team_draft(ranked, ranked, 10, random.Random(3))
    assert got.items == ranked
    assert sorted(got.teams) == ["a"] * 5 + ["b"] * 5


def test_clicks_credit_the_team_that_picked_the_item():
    items, teams = ["1", "2", "5", "3"], ["a", "b", "b", "a"]
    assert credit(teams, items, {"5", "2"}) == {"a": 0, "b": 2}
    assert outcome(credit(teams, items, {"5", "2"})) == "b"
    assert outcome(credit(teams, items, {"1"})) == "a"
    assert outcome(credit(teams, items, {"1", "5"})) == "tie"
    assert outcome(credit(teams, items, set())) == "tie"


# -- join and report -------------------------------------------------------------------------
def test_feedback_joins_the_exposure_within_the_window():
    e1 = Exposure("e1", "control", "u", "r1", 100.0, ("i1", "i2"))
    e2 = Exposure("e1", "control", "u", "r2", 200.0, ("i2", "i3"))
    joined = join(
        [e1, e2],
        [
            Signal("u", "i1", 150.0, True),  # e1 (e2 did not show i1)
            Signal("u", "i2", 250.0, True),  # the latest exposure before it: e2
            Signal("u", "i3", 200.0 + 999, True),  # past the window
            Signal("u", "i1", 120.0, False),  # a dislike is not positive
            Signal("v", "i2", 150.0, True),  # another user
            Signal("u", "i2", 300.0, True, request_id="r1"),  # named: r1, but past its window
        ],
        window_s=100.0,
    )
    assert [j.positives for j in joined] == [{"i1"}, {"i2"}]


def ab_joined(rates: dict[str, float], users: int, seed: int = 0):
    """Impressions of ``users`` users per variant, each clicking its first item with
    probability ``rates[variant]``."""
    rng = np.random.default_rng(seed)
    out = []
    for v, p in rates.items():
        for u in range(users):
            e = Exposure("e1", v, f"{v}-{u}", f"{v}-{u}-r", 0.0, ("x", "y"), None, 10, 0.5)
            click = {"x"} if rng.random() < p else set()
            out.append(join([e], [Signal(e.user_id, i, 1.0, True) for i in click], 10)[0])
    return out


def test_the_ab_report_finds_a_real_difference_and_its_numbers_add_up():
    exp = ExperimentConfig.model_validate(exp_cfg(min_users=50))
    rep = build_report(exp, ab_joined({"control": 0.2, "pop": 0.5}, 300))
    c, p = rep.variants
    assert (c.users, c.exposures, c.llm_tokens, c.llm_seconds) == (300, 300, 3000, 150.0)
    assert c.rate_ci[0] < c.rate < c.rate_ci[1]
    assert c.mrr == pytest.approx(c.rate)  # every click is at rank 1
    assert rep.test.name == "welch_t" and rep.test.p_value < 1e-6
    assert rep.test.favours == "pop"
    assert rep.warnings == []
    data = rep.model_dump(mode="json")
    assert set(data) == {"experiment", "kind", "variants", "test", "warnings"}
    assert set(data["variants"][0]) == {
        "name", "users", "exposures", "rate", "rate_ci", "mrr", "mrr_ci",
        "llm_tokens", "llm_seconds",
    }  # fmt: skip


def test_the_ab_report_warns_about_too_few_users_and_finds_nothing_between_equals():
    exp = ExperimentConfig.model_validate(exp_cfg(min_users=50))
    rep = build_report(exp, ab_joined({"control": 0.3, "pop": 0.3}, 20))
    assert len(rep.warnings) == 2 and "fewer than min_users = 50" in rep.warnings[0]
    rep = build_report(exp, ab_joined({"control": 0.3, "pop": 0.3}, 1))
    assert rep.test.name.startswith("not run")


def test_the_interleaving_report_credits_teams():
    exp = ExperimentConfig.model_validate(exp_cfg(kind="interleave", min_users=2))
    exposures = [
        Exposure("e1", "", f"u{n}", f"r{n}", 0.0, ("1", "2", "3"), ("control", "pop", "pop"))
        for n in range(12)
    ]
    # Ten users click a "pop" item, one clicks a "control" one, one clicks nothing.
    clicks = [Signal(f"u{n}", "2", 1.0, True) for n in range(10)] + [Signal("u10", "1", 1.0, True)]
    rep = build_report(exp, join(exposures, clicks, 10))
    t = rep.test.model_dump()
    assert t["users_preferring"] == {"control": 1, "pop": 10} and t["users_tied"] == 1
    assert rep.test.statistic == pytest.approx(1 / 11)
    assert rep.test.p_value == pytest.approx(
        2 * 12 / 2**11
    )  # two-sided: 2 P(X <= 1), X ~ Bin(11, 1/2)
    assert rep.test.favours == "pop"
    c, p = rep.variants
    assert p.rate == pytest.approx(10 / 12) and c.rate == pytest.approx(1 / 12)
    assert p.mrr == pytest.approx(10 / 12 / 2)  # the pop item clicked is at rank 2


def test_the_documented_example_config_loads():
    """docs/experiments.md's TOML block is a valid config whose second variant ranks by
    popularity alone."""
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "experiments.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block is not None
    cfg = load_config(tomllib.loads(block.group(1)), use_env=False)
    (exp,) = cfg.service.experiments
    pop = variant_config(cfg, exp.name, "popularity")
    assert {k for k, w in pop.retrieval.sources.items() if w > 0} == {"popularity"}


def test_per_user_means_keep_the_aa_rate_where_a_per_impression_test_does_not():
    """The known-bad case for the report's unit: users differ in how much they click and
    each has ten impressions, so impressions of one user are correlated. Over A/A splits of
    the same traffic, Welch's t on per-impression values (as if independent) finds far
    more than alpha 'differences'; the report's per-user test stays near alpha."""
    from scipy import stats as sps

    rng = np.random.default_rng(5)
    users = [f"u{n}" for n in range(200)]
    propensity = dict(zip(users, rng.beta(0.5, 2.0, len(users)), strict=True))
    clicks = {u: rng.random(10) < propensity[u] for u in users}
    runs, per_user_fp, per_impression_fp = 60, 0, 0
    for r in range(runs):
        exp = ExperimentConfig.model_validate(exp_cfg(name=f"aa-{r}", min_users=1))
        joined, values = [], {"control": [], "pop": []}
        for u in users:
            v = assign(exp, u).name
            for n, hit in enumerate(clicks[u]):
                e = Exposure(exp.name, v, u, f"{u}-{n}", float(n), ("x", "y"))
                joined += join([e], [Signal(u, "x", n + 0.5, True)] if hit else [], 10.0)
                values[v].append(float(hit))
        per_user_fp += build_report(exp, joined, n_boot=50).test.p_value < 0.05
        naive = sps.ttest_ind(values["control"], values["pop"], equal_var=False)
        per_impression_fp += naive.pvalue < 0.05
    print(
        f"A/A false positives of {runs}: per user {per_user_fp}, per impression {per_impression_fp}"
    )
    assert per_user_fp <= 8, per_user_fp  # alpha is 3 of 60
    assert per_impression_fp >= 12, per_impression_fp
