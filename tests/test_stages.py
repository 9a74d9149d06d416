"""Each stage of the request path on its own (genre_agent.service.stages), and the ranker
table's declarations (genre_agent.ranking.RANKERS)."""

from __future__ import annotations

import pytest
from test_chat import catalog, make_rec

from genre_agent.config import load_config
from genre_agent.errors import GenreError
from genre_agent.llm.fake import FakeLLM
from genre_agent.ranking import RANKERS, Needs, RankRequest, needs, needs_llm, ranker_sources
from genre_agent.ranking.base import top_by_score
from genre_agent.service.requests import RecRequest
from genre_agent.service.stages import explain as explain_stage
from genre_agent.service.stages.rank import rank_request
from genre_agent.service.stages.resolve import COLD_NOTE
from genre_agent.service.stages.retrieve import given, search
from genre_agent.service.stages.trace import finish, shortfall
from genre_agent.storage.interactions import Interaction
from genre_agent.types import Candidate, Trace


def _rec(tmp_path, **over):
    return make_rec(
        tmp_path,
        None,
        name=f"st{abs(hash(str(over))) % 10**8}",
        **{"profile.path": str(tmp_path / "p.sqlite"), **over},
    )


def _cand(i: str, score: float) -> Candidate:
    item = next(it for it in catalog() if it.id == i)
    return Candidate(item=item, score=score, source="t")


# -- the ranker table ---------------------------------------------------------------------------


def test_every_mode_is_a_table_entry_that_declares_its_needs():
    assert set(RANKERS) == {"retrieval", "learned", "listwise", "scoring"}
    for mode, cls in RANKERS.items():
        assert isinstance(cls.needs, Needs) and cls.label, mode
    assert needs(load_config({"ranking": {"mode": "retrieval"}})) == Needs(orders_all=True)
    assert needs(load_config({"ranking": {"mode": "learned"}})).learned_model
    assert needs(load_config({"ranking": {"mode": "listwise"}})).explains_inline


@pytest.mark.parametrize(
    ("ranking", "extra", "want"),
    [
        ({"mode": "retrieval", "rationale_top_r": 0}, {}, False),
        ({"mode": "retrieval", "rationale_top_r": 3}, {}, True),
        ({"mode": "learned", "rationale_top_r": 0}, {}, False),
        (
            {"mode": "learned", "rationale_top_r": 0, "learned": {"llm_feature": {"cold": True}}},
            {},
            True,
        ),
        ({"mode": "scoring", "rationale_top_r": 0}, {}, True),
        ({"mode": "listwise", "rationale_top_r": 0}, {}, True),
        ({"mode": "retrieval", "rationale_top_r": 0}, {"profile": {"use_in_rerank": True}}, True),
        ({"mode": "retrieval", "rationale_top_r": 0}, {"enrich": {"enabled": True}}, True),
    ],
)
def test_needs_llm_reads_the_declarations(ranking, extra, want):
    assert needs_llm(load_config({"ranking": ranking, **extra})) is want


def test_only_the_learned_ranker_reads_sources_of_its_own():
    assert ranker_sources(load_config({"ranking": {"mode": "retrieval"}})) == []
    assert "popularity" in ranker_sources(load_config({"ranking": {"mode": "learned"}}))


def test_top_by_score_breaks_ties_by_id():
    cands = [_cand("3", 1.0), _cand("2", 1.0), _cand("1", 0.5)]
    top = top_by_score(cands, [c.score for c in cands], 2)
    assert [(t.rank, t.item.id) for t in top] == [(1, "2"), (2, "3")]


# -- resolve -------------------------------------------------------------------------------------


def test_resolve_warm_history_and_profile_scope(tmp_path):
    rec = _rec(tmp_path)
    job = rec.pipeline.resolver.resolve(RecRequest(history=["1", "2"], profile="likes sci-fi"))
    assert job.strategy == "personal" and [i.id for i in job.history.items] == ["1", "2"]
    assert job.profile_used == ("retrieval", "rerank") and job.k == rec.config.ranking.k


def test_resolve_cold_fallback_order(tmp_path):
    rec = _rec(tmp_path)
    resolve = rec.pipeline.resolver.resolve
    popular = resolve(RecRequest(user_id="new"))
    assert popular.strategy == "popular" and popular.notes == [COLD_NOTE]
    assert resolve(RecRequest(user_id="new", query="space")).strategy == "stated"
    assert resolve(RecRequest(user_id="new", profile="likes sci-fi")).strategy == "personal"
    only_query = _rec(tmp_path / "q", **{"cold.fallback": ["query"]})
    with pytest.raises(GenreError, match="cold.fallback"):
        only_query.pipeline.resolver.resolve(RecRequest(user_id="new"))


def test_resolve_min_history_counts_stored_items_only(tmp_path):
    rec = _rec(tmp_path, **{"cold.min_history": 3, "cold.fallback": ["popularity"]})
    rec.add_interactions([Interaction("two", "1", 1.0), Interaction("two", "2", 2.0)])
    resolve = rec.pipeline.resolver.resolve
    assert resolve(RecRequest(user_id="two")).strategy == "popular"
    assert resolve(RecRequest(history=["1", "2"])).strategy == "personal"


# -- retrieve ------------------------------------------------------------------------------------


def test_retrieve_given_candidates_and_their_errors(tmp_path):
    rec = _rec(tmp_path)
    job = rec.resolve(RecRequest(history=["1"]), given(rec.sources, ["5", "4"]))
    assert [c.item.id for c in job.candidates] == ["5", "4"] and job.signals == {"embedding": 1.0}
    with pytest.raises(GenreError, match="not in the index"):
        rec.resolve(RecRequest(history=["1"]), given(rec.sources, ["nope"]))
    with pytest.raises(GenreError, match="not distinct"):
        rec.resolve(RecRequest(history=["1"]), given(rec.sources, ["5", "5"]))


def test_retrieve_a_popular_request_reads_the_popularity_source_alone(tmp_path):
    rec = _rec(tmp_path)
    rec.add_interactions([Interaction("a", "7"), Interaction("b", "7"), Interaction("a", "9")])
    job = rec.resolve(RecRequest(user_id="new", k=2), search(10))
    assert job.signals == {"popularity": 1.0}
    assert [c.item.id for c in job.candidates][:2] == ["7", "9"]


# -- evidence ------------------------------------------------------------------------------------


def test_evidence_first_for_llm_rankers_else_after_ranking(tmp_path):
    rec = _rec(tmp_path, **{"ranking.mode": "retrieval", "ranking.rationale_top_r": 0})
    job = rec.resolve(RecRequest(history=["1", "2"], k=3), search(10))
    assert all(c.evidence is None for c in job.candidates)  # retrieval: after ranking only
    ranked = top_by_score(job.candidates, [c.score for c in job.candidates], 3)
    with_ev = rec.evidence.after_rank(job, ranked)
    assert [i.item.id for i in with_ev] == [i.item.id for i in ranked]
    assert all(i.evidence is not None for i in with_ev)
    llm = _rec(tmp_path / "l", **{"ranking.mode": "scoring", "ranking.rationale_top_r": 0})
    job = llm.resolve(RecRequest(history=["1", "2"], k=3), search(10))
    assert job.candidates and all(c.evidence is not None for c in job.candidates)


# -- rank, explain, trace ------------------------------------------------------------------------


def test_rank_request_carries_what_feature_rankers_read(tmp_path):
    rec = _rec(tmp_path)
    rec.add_interactions([Interaction("u", "1", 5.0), Interaction("u", "2", 9.0, 1.0)])
    job = rec.resolve(RecRequest(user_id="u"), search(10))
    req = rank_request(job)
    assert req.retrieval is job.query and req.n_liked == 1 and req.user_ts == 9.0


def test_explain_is_skipped_for_rankers_that_explain_inline_and_without_top_r():
    assert explain_stage.wanted(load_config({"ranking": {"mode": "scoring"}}))
    assert not explain_stage.wanted(load_config({"ranking": {"mode": "listwise"}}))
    assert not explain_stage.wanted(load_config({"ranking": {"rationale_top_r": 0}}))
    calls = []
    explain_stage.explain(
        lambda: calls.append(1) or FakeLLM(),  # type: ignore[func-returns-value]
        load_config({"ranking": {"mode": "retrieval", "rationale_top_r": 2}}),
        [RankRequest([])],
        [([], Trace(candidates=[]))],
    )
    assert not calls  # no candidates: the engine is not even built


def test_trace_names_the_ranker_and_the_shortfall(tmp_path):
    rec = _rec(tmp_path, **{"ranking.rationale_top_r": 0})
    job = rec.resolve(RecRequest(history=["1"], k=3), search(10))
    out = finish(rec.config, job, [], Trace(candidates=job.candidates))
    assert out.trace.ranked_by == "retrieval" and out.trace.strategy == "personal"
    assert out.trace.notes == [shortfall(rec.config, job, 0, 0)]
    assert out.trace.notes[0].startswith("0 of 3 asked: the ranker returned 0 valid items")


def test_a_new_mode_is_one_class_and_one_table_entry(tmp_path, monkeypatch):
    """docs/architecture.md's worked example: a table entry is all the pipeline reads."""
    from typing import ClassVar

    from genre_agent.ranking.base import RankerContext

    class AsGivenRanker:
        needs: ClassVar[Needs] = Needs(orders_all=True)
        label: ClassVar[str] = "as_given"

        @classmethod
        def from_context(cls, ctx: RankerContext) -> AsGivenRanker:
            return cls()

        def rank_many(self, requests, temperature=0.0, seed=0):
            return [
                (
                    top_by_score(r.candidates, [-float(i) for i in range(len(r.candidates))], r.k),
                    Trace(candidates=[]),
                )
                for r in requests
            ]

    monkeypatch.setitem(RANKERS, "retrieval", AsGivenRanker)  # the config names a known mode
    rec = _rec(tmp_path, **{"ranking.mode": "retrieval", "ranking.rationale_top_r": 0})
    out = rec.rank(["9", "3", "7"], history=["1"], k=3)
    assert [i.item.id for i in out.items] == ["9", "3", "7"]
    assert out.trace.ranked_by == "as_given" and all(i.evidence for i in out.items)
