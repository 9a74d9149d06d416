"""Leave-one-out split, candidate protocols, determinism and label-blindness."""

from __future__ import annotations

from pathlib import Path

import pytest

from genre_agent.errors import ConfigError
from genre_agent.eval.baselines import BaselineSuite
from genre_agent.eval.datasets import DatasetConfig, load_dataset
from genre_agent.eval.fixtures import write_jsonl_dataset
from genre_agent.eval.protocols import (
    EvalCase,
    ProtocolConfig,
    build_cases,
    retriever_recall,
    split_user,
)
from genre_agent.eval.runner import rank_requests
from genre_agent.llm import FakeLLM
from genre_agent.ranking.listwise import ListwiseRanker


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
    suite = BaselineSuite(ds)
    cfg = ProtocolConfig(kind="popularity", n_candidates=6, users=6, min_history=3)
    for c in build_cases(ds, cfg, "test", popularity=suite.popularity):
        assert all(suite.popularity.get(i, 0) > 0 for i in c.candidates if i != c.target)
    with pytest.raises(ConfigError, match="popularity"):
        build_cases(ds, cfg, "test")


def test_retriever_negatives_and_two_stage(ds) -> None:
    suite = BaselineSuite(ds)
    retrieve = suite.retrieve_fn("itemknn")
    hard = build_cases(
        ds,
        ProtocolConfig(kind="retriever", n_candidates=5, users=4, min_history=3),
        "test",
        retrieve=retrieve,
    )
    for c in hard:
        negs = {i for i in c.candidates if i != c.target}
        seen = {r.item_id for r in ds.by_user[c.user_id]}
        assert negs == set([i for i in retrieve(c.history, set(), 50) if i not in seen][:4])
    two = build_cases(
        ds,
        ProtocolConfig(kind="two-stage", n_candidates=6, users=12, min_history=3),
        "test",
        retrieve=retrieve,
    )
    assert all(c.candidates == tuple(retrieve(c.history, set(c.history), 6)) for c in two)
    recall = retriever_recall(two)
    assert recall == sum(c.target in c.candidates for c in two) / len(two)
    with pytest.raises(ConfigError, match="retriever"):
        build_cases(ds, ProtocolConfig(kind="two-stage"), "test")


def test_model_input_does_not_depend_on_the_target(ds) -> None:
    case = build_cases(ds, ProtocolConfig(n_candidates=6, users=1, min_history=3), "test")[0]
    other_target = next(i for i in case.candidates if i != case.target)
    twin = EvalCase(case.user_id, case.split, case.history, other_target, case.candidates)
    seen = []
    for c in (case, twin):
        llm = FakeLLM("first")
        ListwiseRanker(llm).rank_many([rank_requests(c, ds, 20, 3)])
        seen.append(llm.requests)
    assert seen[0] == seen[1] and seen[0]
    assert [r.hint for r in seen[0]] == [r.hint for r in seen[1]]
