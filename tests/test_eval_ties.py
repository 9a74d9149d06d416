"""Tie-safe splits: interactions that share a timestamp are never ordered by item id."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
from pathlib import Path

import pytest

from genre_agent.catalog.items import Item
from genre_agent.errors import ConfigError
from genre_agent.storage.interactions import Interaction, InteractionStore, time_ordered
from genre_eval.datasets import Dataset, DatasetConfig, load_dataset
from genre_eval.metrics import user_metrics
from genre_eval.protocols import (
    EvalCase,
    ProtocolConfig,
    build_cases,
    eligibility,
    split_dataset,
)
from genre_eval.stats import bootstrap_ci

ML_SMALL = Path(os.environ.get("GENRE_DEMO_DATA", "../shared/data/ml-latest-small"))
N_ITEMS, N_USERS, N_CANDS = 400, 600, 20


def _tied_world() -> Dataset:
    """Users whose last 2-4 interactions share one timestamp (a bulk rating session), ids
    drawn at random: time says nothing about which of those came last."""
    rng = random.Random(5)
    ids = [f"i{n:04d}" for n in range(N_ITEMS)]
    items = {i: Item(id=i, title=f"Movie {i}", text="") for i in ids}
    rows = []
    for u in range(N_USERS):
        picked = rng.sample(ids, 12)
        group = rng.randint(2, 4)
        for t, item in enumerate(picked):
            ts = 1000.0 + min(t, len(picked) - group)
            rows.append(Interaction(f"u{u:03d}", item, ts))
    return Dataset("tied", rows, items)


def _next_id_predictor(case: EvalCase) -> list[str]:
    """Knows nothing but ids: the next item is the candidate whose id sorts closest after
    the last history item's (then the others, closest before first)."""
    last = case.history[-1]
    above = sorted(c for c in case.candidates if c > last)
    below = sorted((c for c in case.candidates if c <= last), reverse=True)
    return above + below


def _ndcg(ds: Dataset, ties: str) -> tuple[float, float, float]:
    proto = ProtocolConfig(n_candidates=N_CANDS, users=N_USERS, ties=ties)  # type: ignore[arg-type]
    cases = build_cases(split_dataset(ds, proto), proto, "test")
    values = [
        user_metrics(_next_id_predictor(c), {c.target}, c.candidates, [10])["ndcg@10"]
        for c in cases
    ]
    ci = bootstrap_ci(values)
    return ci.mean, ci.low, ci.high


def test_the_id_tie_rule_leaks_and_the_seeded_draw_does_not() -> None:
    """The metric sees the failure it is named for: under the old rule (ties by id) a
    predictor that only knows "the next id sorts after the last one" scores far above
    chance; under the default seeded draw it is at chance."""
    ds = _tied_world()
    chance = sum(1 / math.log2(r + 1) for r in range(1, 11)) / N_CANDS  # target slot uniform
    old, old_low, _ = _ndcg(ds, "id")
    new, new_low, new_high = _ndcg(ds, "random")
    assert old_low > chance + 0.15, (old, chance)
    assert new_low <= chance <= new_high, (new, new_low, new_high, chance)
    # Same data, same users: only the tie rule differs.
    assert ds.sha256 == split_dataset(ds, ProtocolConfig(ties="id")).sha256


def test_ties_are_a_seeded_draw_independent_of_ids_and_of_file_order() -> None:
    rows = [Interaction("u", f"i{n}", 5.0) for n in range(6)] + [Interaction("u", "a", 1.0)]
    first = time_ordered(rows, seed=0)
    assert first[0].item_id == "a"  # time still comes first
    assert time_ordered(rows[::-1], seed=0) == first  # file order does not matter
    by_id = [r.item_id for r in time_ordered(rows, seed=0, ties="id")]
    assert by_id == ["a", "i0", "i1", "i2", "i3", "i4", "i5"]
    lasts = {time_ordered(rows, seed=s)[-1].item_id for s in range(60)}
    assert lasts == {f"i{n}" for n in range(6)}  # every tied item can be the held-out one


def test_the_protocol_setting_reproduces_the_old_split_on_request() -> None:
    ds = _tied_world()
    old = split_dataset(ds, ProtocolConfig(ties="id"))
    assert all(
        rows[-1].item_id == max(r.item_id for r in rows if r.timestamp == rows[-1].timestamp)
        for rows in old.by_user.values()
    )
    new = split_dataset(ds, ProtocolConfig())
    assert new is ds  # the default ordering is the dataset's own
    reseeded = split_dataset(ds, ProtocolConfig(split_seed=1))
    assert [r[-1] for r in reseeded.by_user.values()] != [r[-1] for r in new.by_user.values()]
    # A dataset ordered one way cannot be split as if ordered another: a clear error.
    with pytest.raises(ConfigError, match="protocol.ties='id'"):
        build_cases(ds, ProtocolConfig(ties="id"), "test")


def test_eligibility_counts_the_users_tied_at_each_split_point() -> None:
    ds = _tied_world()
    counted = eligibility(ds, ProtocolConfig(users=N_USERS))
    assert counted.tied_test == N_USERS  # every user's last group has 2-4 items
    assert counted.tied_valid == N_USERS  # rows[-2] is in the last group too
    text = counted.describe()
    assert f"ties at the split point: {N_USERS} of {N_USERS}" in text and "seeded random" in text


def test_interaction_store_keeps_arrival_order_for_ties(tmp_path: Path) -> None:
    store = InteractionStore(tmp_path / "i.db")
    store.add([Interaction("u", "z9", 5.0), Interaction("u", "a1", 5.0)])
    store.add([Interaction("u", "m5", 5.0), Interaction("u", "b0", 1.0)])
    assert [r.item_id for r in store.history("u")] == ["b0", "z9", "a1", "m5"]
    store.close()


@pytest.mark.skipif(
    not (ML_SMALL / "ratings.csv").exists(), reason=f"ml-latest-small not at {ML_SMALL}"
)
def test_ml_latest_small_has_94_of_610_users_tied_at_the_last_timestamp() -> None:
    ds = load_dataset(DatasetConfig(kind="movielens", path=ML_SMALL))
    counted = eligibility(ds, ProtocolConfig(users=1000))
    assert (counted.users, counted.tied_test, counted.tied_valid) == (610, 94, 145)


def test_the_report_states_how_many_users_had_ties(tmp_path: Path) -> None:
    from genre_eval.fixtures import tiny_experiment, write_jsonl_dataset
    from genre_eval.quality_table import main as quality_table
    from genre_eval.report import write_report
    from genre_eval.runner import Runner
    from genre_eval.summary import summarize_prepared

    data = write_jsonl_dataset(tmp_path / "d")
    # Two of the tiny dataset's users get a second interaction at their last timestamp.
    lines = (data / "interactions.jsonl").read_text().splitlines()
    extra = []
    for user in ("u1", "u2"):
        last = max(
            (json.loads(x) for x in lines if json.loads(x)["user_id"] == user),
            key=lambda r: r["timestamp"],
        )
        seen = {json.loads(x)["item_id"] for x in lines if json.loads(x)["user_id"] == user}
        extra.append({**last, "item_id": next(str(i) for i in range(1, 41) if str(i) not in seen)})
    (data / "interactions.jsonl").write_text(
        "\n".join(lines + [json.dumps(r) for r in extra]) + "\n"
    )
    exp = tiny_experiment(data, variants=[], baselines=["popularity"])
    runner = Runner(exp, tmp_path / "run")
    runner.run()
    summary = summarize_prepared(tmp_path / "run", runner.prepared)
    assert summary["eligibility"]["tied_test"] == 2
    md, _ = write_report(tmp_path / "run")
    want = "ties at the split point: 2 of 12 eligible users at the test target"
    assert want in md.read_text()
    for name in ("full", "sampled"):  # the quality table's closing lines say it too
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        quality_table([str(tmp_path / "full"), str(tmp_path / "sampled")])
    assert f"full catalog: {want}" in out.getvalue()


def test_genre_fit_ranker_split_does_not_hold_out_the_largest_id() -> None:
    from genre_agent.service.learn import last_item_split

    rows = [
        Interaction(f"u{u}", item, ts)
        for u in range(40)
        for item, ts in (("a", 1.0), ("m1", 2.0), ("m2", 2.0))
    ]
    _, examples = last_item_split(rows)
    targets = {e.target for e in examples}
    assert targets == {"m1", "m2"}  # by id it would always be "m2"
