"""Content-free calibration removes a pure label-position prior; position-bias split."""

from __future__ import annotations

import hashlib
import math

from genre_agent.catalog.items import Item
from genre_agent.config import RankingConfig
from genre_agent.llm.fake import FakeLLM
from genre_agent.ranking.base import RankRequest
from genre_agent.ranking.calibration import calibrate, split_by_position
from genre_agent.ranking.scoring import ScoringRanker
from genre_agent.types import Candidate


def _pref(item_id: str) -> float:
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) / 2**32


def biased(req):
    """Strong preference for early labels plus a weak, position-free item preference."""
    ids = req.hint.get("candidate_ids") or []
    raw = [-0.8 * i + (_pref(ids[i]) if ids else 0.0) for i in range(len(req.labels))]
    log_z = math.log(sum(math.exp(v) for v in raw))
    return {lab: v - log_z for lab, v in zip(req.labels, raw, strict=True)}


def _req(ids):
    items = [Item(id=i, title=f"Title {i}", text="Genres: Drama.") for i in ids]
    return RankRequest(candidates=[Candidate(item=it, score=0.0, source="t") for it in items], k=6)


def _order(cal: str, ids, llm=None):
    llm = llm or FakeLLM("first", score_script=biased)
    ranker = ScoringRanker(llm, RankingConfig(mode="scoring", calibration=cal, rationale_top_r=0))
    [(ranked, trace)] = ranker.rank_many([_req(ids)])
    return [r.item.id for r in ranked], trace


def test_calibrate_is_log_softmax_of_difference():
    out = calibrate(
        {"A": math.log(0.7), "B": math.log(0.3)}, {"A": math.log(0.7), "B": math.log(0.3)}
    )
    assert math.isclose(out["A"], math.log(0.5)) and math.isclose(out["B"], math.log(0.5))
    out = calibrate(
        {"A": math.log(0.5), "B": math.log(0.5)}, {"A": math.log(0.8), "B": math.log(0.2)}
    )
    assert out["B"] > out["A"]
    assert math.isclose(sum(math.exp(v) for v in out.values()), 1.0)


def test_content_free_calibration_removes_the_position_prior():
    ids = [f"i{n}" for n in range(6)]
    rev = ids[::-1]
    raw_a, _ = _order("none", ids)
    raw_b, _ = _order("none", rev)
    # Uncalibrated, the ranking follows the presented order (position bias wins).
    assert raw_a == ids and raw_b == rev
    cal_a, trace = _order("content_free", ids)
    cal_b, _ = _order("content_free", rev)
    expected = sorted(ids, key=lambda i: -_pref(i))
    assert cal_a == cal_b == expected
    assert trace.llm_calls == 2


def test_content_free_prompt_shows_no_candidate():
    llm = FakeLLM("first", score_script=biased)
    _order("content_free", [f"i{n}" for n in range(4)], llm)
    real, cf = llm.score_requests
    assert "Title i0" in real.messages[1].content
    assert "Title i" not in cf.messages[1].content and "[A] N/A" in cf.messages[1].content
    assert cf.messages[0] == real.messages[0] and cf.labels == real.labels


def test_one_content_free_pass_per_window_length():
    llm = FakeLLM("first", score_script=biased)
    ranker = ScoringRanker(
        llm,
        RankingConfig(
            mode="scoring", calibration="content_free", permutations=3, rationale_top_r=0
        ),
    )
    ranker.rank_many([_req([f"i{n}" for n in range(6)])])
    assert sum(1 for r in llm.score_requests if not r.hint["candidate_ids"]) == 1
    assert len(llm.score_requests) == 4


def test_split_by_position():
    cands = tuple(f"c{i}" for i in range(20))
    rows = [(cands, "c0", 1.0), (cands, "c4", 0.5), (cands, "c10", 0.3), (cands, "c19", 0.0)]
    out = split_by_position(rows)
    assert out["first"] == (0.75, 2) and out["last"] == (0.0, 1)
