"""Leave-one-out split, candidate protocols, determinism and label-blindness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genre_agent.config import EmbedderConfig, load_config
from genre_agent.errors import ConfigError
from genre_agent.llm import FakeLLM
from genre_agent.service.requests import RecRequest
from genre_eval.datasets import DatasetConfig, load_dataset
from genre_eval.fixtures import tiny_experiment, write_jsonl_dataset
from genre_eval.protocols import (
    EvalCase,
    ProtocolConfig,
    build_cases,
    history_rows,
    split_user,
)
from genre_eval.runner import Runner, prepare
from genre_eval.world import EvalWorld


@pytest.fixture()
def ds(tmp_path: Path):
    return load_dataset(DatasetConfig(kind="jsonl", path=write_jsonl_dataset(tmp_path / "d")))


def test_leave_one_out_by_time(ds) -> None:
    rows = ds.by_user["u1"]
    assert [r.timestamp for r in rows] == sorted(r.timestamp for r in rows)
    hist, target = split_user(rows, "test")
    assert target == rows[-1].item_id and hist == tuple(r.item_id for r in rows[:-1])
    vhist, vtarget = split_user(rows, "valid")
    assert vtarget == rows[-2].item_id and vhist == hist[:-1]


def test_sampled_candidates(ds) -> None:
    cfg = ProtocolConfig(kind="sampled", n_candidates=8, users=5, min_history=3)
    cases = build_cases(ds, cfg, "test")
    assert len(cases) == 5
    for c in cases:
        seen = {r.item_id for r in ds.by_user[c.user_id]}
        assert len(c.candidates) == 8 and len(set(c.candidates)) == 8
        assert c.target in c.candidates
        assert not (set(c.candidates) - {c.target}) & seen
    assert build_cases(ds, cfg, "test") == cases  # same seed, same cases
    other = build_cases(ds, cfg.model_copy(update={"seed": 1}), "test")
    assert [c.candidates for c in other] != [c.candidates for c in cases]
    # The target is not always in the same slot (shuffled).
    assert len({c.candidates.index(c.target) for c in cases}) > 1


def test_popularity_negatives_are_popular_items(ds) -> None:
    pop = EvalWorld(ds, EmbedderConfig(kind="fake")).popularity
    cfg = ProtocolConfig(kind="popularity", n_candidates=6, users=6, min_history=3)
    for c in build_cases(ds, cfg, "test", popularity=pop):
        assert all(pop.get(i, 0) > 0 for i in c.candidates if i != c.target)
    with pytest.raises(ConfigError, match="popularity"):
        build_cases(ds, cfg, "test")


def test_retriever_negatives_come_from_the_served_source(tmp_path: Path) -> None:
    data = write_jsonl_dataset(tmp_path / "d")
    proto = {"kind": "retriever", "retriever": "itemknn", "n_candidates": 5, "users": 4}
    exp = tiny_experiment(data, protocol={**proto, "min_history": 3})
    prep = prepare(exp)
    # The fake engine and no rationales: this test is about the candidates, and an unmarked
    # test must not build a real engine (tests/conftest.py refuses it).
    knn = prep.world.recommender(
        load_config(
            {
                "llm": {"engine": "fake"},
                "ranking": {"mode": "retrieval", "rationale_top_r": 0},
                "retrieval": {"sources": {"itemknn": 1}},
            }
        )
    )
    for c in prep.cases:
        seen = {r.item_id for r in prep.ds.by_user[c.user_id]}
        negs = {i for i in c.candidates if i != c.target}
        top = knn.recommend(history=list(c.history), exclude=sorted(seen), k=4)
        assert negs == {it.item.id for it in top.items}
    with pytest.raises(ConfigError, match="retriever"):
        build_cases(prep.ds, ProtocolConfig(kind="retriever"), "test")


def test_two_stage_systems_retrieve_their_own_candidates(tmp_path: Path) -> None:
    data = write_jsonl_dataset(tmp_path / "d")
    proto = {"kind": "two-stage", "n_candidates": 6, "users": 12, "min_history": 3}
    exp = tiny_experiment(
        data, protocol=proto, baselines=["popularity", "itemknn"], variants=[], ks=[1, 5]
    )
    runner = Runner(exp, tmp_path / "run")
    assert all(c.candidates == () for c in runner.prepared.cases)
    runner.run()
    lines = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert {r["system"] for r in lines} == {"popularity", "itemknn"}
    for r in lines:
        assert r["n_candidates"] == 6 and r["candidate_recall"] in (0.0, 1.0)
        assert (r["target"] in r["ranked"]) == bool(r["candidate_recall"])
        case = next(c for c in runner.prepared.cases if c.user_id == r["user_id"])
        assert not set(r["ranked"]) & set(case.history)  # the history is never recommended


def test_model_input_does_not_depend_on_the_target(ds) -> None:
    case = build_cases(ds, ProtocolConfig(n_candidates=6, users=1, min_history=3), "test")[0]
    other_target = next(i for i in case.candidates if i != case.target)
    twin = EvalCase(case.user_id, case.split, case.history, other_target, case.candidates)
    world = EvalWorld(ds, EmbedderConfig(kind="fake"))
    seen = []
    for c in (case, twin):
        llm = FakeLLM("first")
        cfg = load_config({"llm": {"engine": "fake"}, "ranking": {"k": 3}})
        rec = world.recommender(cfg, llm)
        req = RecRequest(user_id=c.user_id, history=history_rows(ds, c), k=3)
        rec.rank_many([(list(c.candidates), req)])
        seen.append(llm.requests)
    assert seen[0] == seen[1] and seen[0]
    assert [r.hint for r in seen[0]] == [r.hint for r in seen[1]]
