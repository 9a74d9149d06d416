"""Metrics: hand-computed values and a cross-check against pytrec_eval on the same run."""

from __future__ import annotations

import math
import random

import pytest

from genre_eval import metrics as M


def test_hand_values() -> None:
    ranked = ["a", "b", "c", "d"]
    rel = {"c"}
    assert M.ndcg_at_k(ranked, rel, 3) == pytest.approx(1 / math.log2(4))
    assert M.ndcg_at_k(ranked, rel, 2) == 0.0
    assert M.mrr_at_k(ranked, rel, 10) == pytest.approx(1 / 3)
    assert M.mrr_at_k(ranked, rel, 2) == 0.0  # document cutoff
    assert M.hit_at_k(ranked, rel, 3) == 1.0
    assert M.precision_at_k(ranked, rel, 4) == 0.25
    assert M.f1_at_k(ranked, rel, 4) == pytest.approx(2 * 0.25 * 1 / 1.25)
    # target at rank 3 of 4 candidates: beats 1 of 3 negatives.
    assert M.auc(ranked, rel, ranked) == pytest.approx(1 / 3)


def test_failed_request_scores_zero_everywhere() -> None:
    out = M.user_metrics([], {"a"}, ["a", "b", "c"], [1, 5])
    assert out and all(v == 0.0 for v in out.values())


def test_auc_unranked_candidates_tie_at_the_bottom() -> None:
    # target ranked first among a partial list: beats all; unranked negatives tie with nothing.
    assert M.auc(["t"], {"t"}, ["x", "t", "y"]) == 1.0
    # target unranked, one negative ranked above, one unranked (tie = 1/2).
    assert M.auc(["x"], {"t"}, ["x", "t", "y"]) == pytest.approx(0.25)


def test_order_by_scores_breaks_ties_by_id() -> None:
    assert M.order_by_scores({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]


def test_list_level_aggregates() -> None:
    lists = [["a", "b"], ["b", "c"]]
    assert M.coverage(lists, 10, 2) == pytest.approx(0.3)
    assert M.average_popularity(lists, {"a": 1, "b": 3, "c": 5}, 2) == pytest.approx(3.0)
    feats = {"a": {"x"}, "b": {"x", "y"}, "c": {"z"}}
    assert M.intra_list_diversity(["a", "b", "c"], feats, 3) == pytest.approx((0.5 + 1 + 1) / 3)


def test_cross_check_with_pytrec_eval() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(3)
    qrels, run, ours = {}, {}, {}
    for u in range(40):
        docs = [f"d{i}" for i in range(20)]
        scores = rng.sample(range(1000), len(docs))  # distinct: no tie-breaking differences
        rel = set(rng.sample(docs, rng.choice([1, 1, 2, 3])))
        qid = f"q{u}"
        qrels[qid] = {d: 1 for d in rel}
        run[qid] = {d: float(s) for d, s in zip(docs, scores, strict=True)}
        ours[qid] = (M.order_by_scores(run[qid]), rel, docs)
    ev = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut_5", "ndcg_cut_10", "recall_5", "recall_10", "P_5", "P_10", "recip_rank"}
    )
    res = ev.evaluate(run)
    checked = 0
    for qid, (ranked, rel, docs) in ours.items():
        for k in (5, 10):
            assert M.ndcg_at_k(ranked, rel, k) == pytest.approx(res[qid][f"ndcg_cut_{k}"], abs=1e-9)
            assert M.recall_at_k(ranked, rel, k) == pytest.approx(res[qid][f"recall_{k}"], abs=1e-9)
            assert M.precision_at_k(ranked, rel, k) == pytest.approx(res[qid][f"P_{k}"], abs=1e-9)
            checked += 3
        assert M.mrr_at_k(ranked, rel, len(docs)) == pytest.approx(res[qid]["recip_rank"], abs=1e-9)
    assert checked == 240
