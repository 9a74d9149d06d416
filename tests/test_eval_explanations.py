"""Explanation metrics: each pure function on hand-made records, then the runner, the summary
and the report on the tiny fixture (fake LLM: "Fits the user's history (<id>).")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from genre_agent.catalog.items import Item
from genre_agent.llm import FakeLLM
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import RecRequest
from genre_agent.types import Evidence, RankedItem, Recommendation, Support
from genre_eval import explain_metrics as em
from genre_eval.fixtures import tiny_experiment, write_jsonl_dataset
from genre_eval.report import write_report
from genre_eval.runner import Runner, read_results
from genre_eval.summary import explanation_summary, summarize_prepared


def entry(
    rationale: str,
    cites: Sequence[str] = (),
    *,
    genres: str = "Comedy",
    support: Sequence[tuple[str, str, list[str]]] = (),
    shared: Sequence[str] = (),
    unsupported: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "item_id": "x",
        "title": "Some Film (2001)",
        "genres": genres,
        "rationale": rationale,
        "cites": list(cites),
        "evidence_ids": [s[0] for s in support],
        "support": [{"id": i, "title": t, "shared": sh} for i, t, sh in support],
        "unsupported_terms": list(unsupported),
        "shared": list(shared),
    }


HISTORY = ["h1", "h2", "h3"]
SUPPORT = [("h1", "Heat (1995)", []), ("h2", "Scream (1996)", ["genre Horror"])]


# -- grounding -------------------------------------------------------------------------------
def test_grounding_needs_cites_in_history_and_no_unsupported_genre() -> None:
    ok = entry("Tense like Heat.", ["h1"], support=SUPPORT)
    outside = entry("Tense like Heat.", ["h9"], support=SUPPORT)  # cite not in the history
    horror = entry("A horror classic.", [], support=SUPPORT)  # the item is a comedy
    cited_horror = entry("Horror fans of Scream will like it.", ["h2"], support=SUPPORT)
    # Horror is only shared with h2, which this sentence does not cite.
    wrong_cite = entry("Horror fans will like it.", ["h1"], support=SUPPORT)
    assert em.is_grounded(ok, HISTORY)
    assert not em.is_grounded(outside, HISTORY)
    assert not em.is_grounded(horror, HISTORY)
    assert em.is_grounded(cited_horror, HISTORY)
    assert not em.is_grounded(wrong_cite, HISTORY)
    entries = [ok, outside, horror, cited_horror, wrong_cite]
    assert em.grounding_rate(entries, HISTORY) == pytest.approx(2 / 5)
    assert em.grounding_rate([], HISTORY) is None


def test_an_attribute_shared_by_the_item_grounds_its_genre_word() -> None:
    e = entry("A horror pick.", [], genres="Comedy", shared=["genre Horror"])
    assert em.is_grounded(e, HISTORY)
    assert em.allowed_text(e).endswith("genre Horror")


def test_unsupported_term_rate() -> None:
    entries = [entry("Fine.", unsupported=[]), entry("By Nolan.", unsupported=["Nolan"])]
    assert em.unsupported_rate(entries) == 0.5
    assert em.unsupported_rate([]) is None


# -- truncation ------------------------------------------------------------------------------
def test_truncation_rate_counts_sentences_without_final_punctuation() -> None:
    texts = [
        "Great pick.",
        "Wow!",
        "Is it good?",
        'He said "go."',
        "Because you liked the",  # cut by max_tokens
        "Fits your history (5)",  # no final period
        "Ends with a period.  ",
    ]
    assert [em.is_cut(t) for t in texts] == [False, False, False, False, True, True, False]
    assert em.truncation_rate([entry(t) for t in texts]) == pytest.approx(2 / 7)


def test_truncated_attempt_rate() -> None:
    assert em.truncated_attempt_rate(1, 4) == 0.25
    assert em.truncated_attempt_rate(0, 3) == 0.0
    assert em.truncated_attempt_rate(0, 0) is None
    with pytest.raises(ValueError):
        em.truncated_attempt_rate(5, 3)


# -- specificity -----------------------------------------------------------------------------
TITLES = ["Toy Story (1995)", "Matrix, The (1999)", "Up (2009)"]


@pytest.mark.parametrize(
    ("rationale", "shared", "specific"),
    [
        ("Playful like toy story.", [], True),  # any case, year dropped
        ("Another ride like The Matrix.", [], True),  # MovieLens' moved article
        ("Another ride like Matrix, The.", [], True),
        ("A sequel to Matrix Reloaded.", [], False),  # not the title
        ("Toy Storyline fans beware.", [], False),  # a whole phrase only
        ("A Pixar film like Up.", [], True),
        ("It cheers you up.", [], False),  # short titles keep their case
        ("Tense like Heat.", [], False),  # Heat is not in this history
        ("A comedy for you.", ["genre Comedy"], True),
        ("Set in space.", ["tag space"], True),
        ("A 1980s favourite.", ["1980s"], True),
        ("A comedy for you.", ["genre Drama"], False),
        ("Recommended for you.", ["genre Comedy", "tag space"], False),
    ],
)
def test_specific_names_a_history_title_or_a_shared_value(
    rationale: str, shared: list[str], specific: bool
) -> None:
    assert em.is_specific(rationale, TITLES, shared) is specific


def test_specificity_rate_and_attribute_values() -> None:
    entries = [
        entry("Like Toy Story."),
        entry("Like Heat."),
        entry("Funny.", shared=["genre Comedy"]),
    ]
    assert em.specificity(entries, TITLES) == pytest.approx(1 / 3)
    assert em.attribute_values(["genre Sci-Fi", "tag time travel", "1990s"]) == [
        "Sci-Fi",
        "time travel",
        "1990s",
    ]
    assert em.title_core("Matrix, The (1999)") == "Matrix, The"


# -- distinctness ----------------------------------------------------------------------------
def test_distinct_2_and_duplicates() -> None:
    assert em.distinct_2(["a b c", "A b d"]) == pytest.approx(3 / 4)
    assert em.distinct_2(["same words here", "same words here"]) == pytest.approx(2 / 4)
    assert em.distinct_2(["one", "two"]) is None
    assert em.duplicate_share(["Great pick.", "great  pick.", "Other."]) == pytest.approx(2 / 3)
    assert em.duplicate_share(["A.", "B."]) == 0.0
    assert em.duplicate_share([]) is None


# -- counterfactual --------------------------------------------------------------------------
def test_rank_drop() -> None:
    before = ["a", "b", "c", "d"]
    assert em.rank_drop(before, ["b", "c", "a", "d"], "a") == 2
    assert em.rank_drop(before, ["d", "a", "b", "c"], "d") == -3
    assert em.rank_drop(before, ["b", "c"], "a") == 2  # cut at k: ranks k + 1
    with pytest.raises(ValueError):
        em.rank_drop(before, before, "z")


def test_removals_pick_cited_and_as_many_seeded_random_items() -> None:
    hist = [f"h{i}" for i in range(10)]
    explained = [("a", ["h1", "h2"]), ("b", ["zz"]), ("c", []), ("d", ["h3", "zz"])]
    plan = em.removals(explained, hist, "0:u1")
    assert [(item, cited) for item, cited, _ in plan] == [("a", ["h1", "h2"]), ("d", ["h3"])]
    for _, cited, rand in plan:
        assert len(rand) == len(cited) and set(rand) <= set(hist) and len(set(rand)) == len(rand)
    assert plan == em.removals(explained, hist, "0:u1")  # seeded by the user
    draws = {tuple(em.removals(explained, hist, f"0:u{n}")[0][2]) for n in range(20)}
    assert len(draws) > 1
    # Removing every history item would leave nothing to rank from: skipped.
    assert em.removals([("a", ["h1", "h2"])], ["h1", "h2"], "s") == []


def test_user_metrics_has_every_metric() -> None:
    out = em.user_metrics([entry("Like Toy Story.", ["h1"])], HISTORY, TITLES, 1, 2)
    assert tuple(out) == em.METRICS
    assert out["truncated_attempt_rate"] == pytest.approx(1 / 3)
    assert out["grounding_rate"] == out["specificity"] == 1.0


def test_explanation_entry_records_cites_and_evidence() -> None:
    ev = Evidence(
        history=[Support(id="h2", title="Scream (1996)", by=["itemknn"], shared=["genre Horror"])],
        shared=["genre Horror"],
    )
    item = Item(id="i1", title="Film (2000)", text="t", metadata={"genres": "Horror|Comedy"})
    got = em.explanation_entry(
        RankedItem(rank=1, item=item, rationale="Like Scream.", cites=["h2"], evidence=ev)
    )
    assert got["evidence_ids"] == ["h2"] and got["cites"] == ["h2"]
    assert got["support"] == [
        {"id": "h2", "title": "Scream (1996)", "shared": ["genre Horror"], "by": ["itemknn"]}
    ]
    assert (got["year"], got["tags"], got["request"]) == (None, [], [])
    assert (got["title"], got["genres"], got["shared"]) == (
        "Film (2000)",
        "Horror|Comedy",
        ["genre Horror"],
    )


# -- summary of hand-made lines -----------------------------------------------------------------
def _line(user: str, seed: int, grounding: float | None, cited: float | None, rand: float | None):
    return {
        "user_id": user,
        "seed": seed,
        "explanations": [entry("A."), entry("B.")],
        "explain_metrics": {m: 0.0 for m in em.METRICS} | {"grounding_rate": grounding},
        "cf_drop_cited": cited,
        "cf_drop_random": rand,
    }


def test_explanation_summary_averages_users_and_pairs_the_counterfactual() -> None:
    lines = [
        _line("u1", 0, 1.0, 2.0, 0.0),
        _line("u1", 1, 0.0, 4.0, 0.0),  # seeds of one user are averaged first
        _line("u2", 0, 1.0, 1.0, 1.0),
        _line("u3", 0, None, None, None),  # undefined for u3: left out
        {"user_id": "u4", "seed": 0},  # no rationale: no line in the block
    ]
    s = explanation_summary(lines, 200)
    assert s is not None
    assert s["rationales"] == 8 and s["users"] == 3
    m = s["metrics"]
    assert m["grounding_rate"]["mean"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["grounding_rate"]["users"] == 2
    assert m["cf_drop_cited"]["mean"] == pytest.approx((3.0 + 1.0) / 2)
    assert m["cf_drop_random"]["mean"] == pytest.approx(0.5)
    diff = m["cf_drop_cited_minus_random"]
    assert diff["mean"] == pytest.approx(((3.0 - 0.0) + (1.0 - 1.0)) / 2)
    assert diff["low"] <= diff["mean"] <= diff["high"] and diff["users"] == 2
    assert explanation_summary([{"user_id": "u", "seed": 0}], 200) is None
    no_cf = explanation_summary([_line("u1", 0, 1.0, None, None)], 200)
    assert no_cf is not None and "cf_drop_cited" not in no_cf["metrics"]


# -- the runner, summary and report on the tiny fixture --------------------------------------
FREE = {"ranking.rationale_format": "free", "ranking.rationale_template": "explain_item"}


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_jsonl_dataset(tmp_path / "data")


def _experiment(data: Path, **extra: Any) -> Any:
    spec: dict[str, Any] = {
        "config": {
            "llm": {"engine": "fake"},
            "embedder": {"kind": "fake"},
            "ranking": {"mode": "retrieval", "rationale_top_r": 3},
        },
        "explanations": True,
        "variants": [{"name": "evidence"}, {"name": "free", "overrides": FREE}],
        "baselines": ["popularity"],
    }
    return tiny_experiment(data, **{**spec, **extra})


def test_runner_records_explanations_and_the_report_compares_variants(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Recommender, list[tuple[Sequence[Any], RecRequest]], list[Any]]] = []
    real = Recommender.rank_many

    def spy(self: Recommender, jobs: Any) -> list[Recommendation]:
        outs = real(self, jobs)
        calls.append((self, list(jobs), outs))
        return outs

    monkeypatch.setattr(Recommender, "rank_many", spy)
    llms: list[FakeLLM] = []

    def factory(_: Any) -> FakeLLM:
        llms.append(FakeLLM("first"))
        return llms[-1]

    run = Runner(_experiment(data), tmp_path / "r", llm_factory=factory)
    run.run()
    lines = read_results(tmp_path / "r")
    new = {"explanations", "explain_metrics", "rationale_attempts_truncated", "cf_drop_cited"}
    assert not new & {k for r in lines if r["system"] == "popularity" for k in r}

    hist = {c.user_id: c.history for c in run.prepared.cases}
    for name in ("evidence", "free"):
        recs = [r for r in lines if r["system"] == name]
        assert len(recs) == 8
        for r in recs:
            ex = r["explanations"]
            assert [e["item_id"] for e in ex] == r["ranked"][:3]
            # The fake: "Like <first support>, ..." citing it (evidence), or a fixed sentence.
            for e in ex:
                if name == "evidence":
                    opener = "Like " if e["evidence_ids"] else "Fits the user's history"
                    assert e["rationale"].startswith(opener)
                else:
                    assert e["rationale"] == f"Fits the user's history ({e['item_id']})."
            assert r["rationale_attempts_truncated"] == 0
            assert r["explain_metrics"]["grounding_rate"] == 1.0
            if name == "evidence":  # the fake cites one evidence id
                # The fake cites one support, the first that shares something.
                assert all(len(e["cites"]) == 1 and e["cites"][0] in e["evidence_ids"] for e in ex)
                assert all(set(e["cites"]) <= set(hist[r["user_id"]]) for e in ex)
            else:
                assert all(e["cites"] == [] for e in ex)
                assert r["cf_drop_cited"] is None and r["cf_drop_random"] is None
    # At most one explain request per explained item: the counterfactual calls no LLM. The
    # evidence prompt shows the supporting items, not the whole history, so two users can
    # send the same prompt, which the run's response cache answers once.
    explains = [q for llm in llms for q in llm.requests if q.hint.get("task") == "explain"]
    assert len([q for q in explains if q.hint["format"] == "free"]) == 8 * 3
    grounded = [q for q in explains if q.hint["format"] != "free"]
    assert 0 < len(grounded) <= 8 * 3
    assert len({(q.messages, q.regex) for q in grounded}) == len(grounded)

    # The counterfactual: the served candidates re-ranked without rationales, first with the
    # whole history, then without the cited items, then without as many random ones.
    sources = run.variant_config(run.exp.variants[0]).retrieval.sources  # not the baseline's
    cf_calls = [
        c
        for c in calls
        if c[0].config.ranking.rationale_top_r == 0 and c[0].config.retrieval.sources == sources
    ]
    evidence = {r["user_id"]: r for r in lines if r["system"] == "evidence"}
    # No engine was ever loaded by the counterfactual's Recommender (it loads lazily).
    assert len(cf_calls) == 8 and all(c[0]._llm is None for c in cf_calls)
    for _, jobs, outs in cf_calls:
        user = jobs[0][1].user_id
        line = evidence[user]
        assert all(
            len(cands) == 8 and {it.id for it in cands} == set(line["ranked"]) for cands, _ in jobs
        )
        full = [row.item_id for row in jobs[0][1].history]
        assert tuple(full) == hist[user]
        orders = [[it.item.id for it in o.items] for o in outs]
        cited, rand = [], []
        plan = [e for e in line["explanations"] if e["cites"]]
        assert len(jobs) == 1 + 2 * len(plan)
        for n, e in enumerate(plan):
            without = [row.item_id for row in jobs[1 + 2 * n][1].history]
            assert without == [h for h in full if h not in e["cites"]]
            assert len({row.item_id for row in jobs[2 + 2 * n][1].history}) == len(set(full)) - 1
            cited.append(orders[1 + 2 * n].index(e["item_id"]) - orders[0].index(e["item_id"]))
            rand.append(orders[2 + 2 * n].index(e["item_id"]) - orders[0].index(e["item_id"]))
        assert line["cf_drop_cited"] == pytest.approx(sum(cited) / len(cited))
        assert line["cf_drop_random"] == pytest.approx(sum(rand) / len(rand))
    # Removing the evidence moves the explained items more than removing random items.
    assert any(r["cf_drop_cited"] != r["cf_drop_random"] for r in evidence.values())

    s = summarize_prepared(tmp_path / "r", run.prepared)
    assert "explanations" not in s["systems"]["popularity"]
    for name in ("evidence", "free"):
        block = s["systems"][name]["explanations"]
        assert block["rationales"] == 24 and block["users"] == 8
        assert block["metrics"]["grounding_rate"]["mean"] == 1.0
        assert block["metrics"]["truncation_rate"]["mean"] == 0.0
    ev = s["systems"]["evidence"]["explanations"]["metrics"]
    mean_cited = sum(r["cf_drop_cited"] for r in evidence.values()) / 8
    assert ev["cf_drop_cited"]["mean"] == pytest.approx(mean_cited)
    assert ev["cf_drop_cited_minus_random"]["users"] == 8
    assert "cf_drop_cited" not in s["systems"]["free"]["explanations"]["metrics"]

    md_path, html_path = write_report(tmp_path / "r")
    md = md_path.read_text()
    section = md.split("## Explanations", 1)[1]
    assert "| metric | evidence | free |" in section
    row = next(x for x in section.splitlines() if x.startswith("| grounding rate"))
    assert row.count("1.0000 [1.0000, 1.0000]") == 2
    row = next(x for x in section.splitlines() if x.startswith("| counterfactual: cited - random"))
    assert row.endswith("| - |")
    assert "<h2>Explanations" in html_path.read_text()


def test_llm_ranking_modes_record_no_counterfactual(data: Path, tmp_path: Path) -> None:
    exp = _experiment(
        data,
        variants=[{"name": "listwise", "mode": "listwise"}],
        protocol={"kind": "sampled", "n_candidates": 8, "users": 3, "min_history": 3},
        baselines=[],
    )
    Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first")).run()
    lines = read_results(tmp_path / "r")
    assert len(lines) == 3 and all(r["explanations"] for r in lines)
    assert all(r["cf_drop_cited"] is None and r["cf_drop_random"] is None for r in lines)


def test_without_the_switch_no_counterfactual_is_recorded(data: Path, tmp_path: Path) -> None:
    exp = _experiment(
        data,
        explanations=False,
        variants=[{"name": "evidence"}],
        protocol={"kind": "sampled", "n_candidates": 8, "users": 3, "min_history": 3},
        baselines=[],
    )
    assert _experiment(data).explanations and not exp.explanations
    Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first")).run()
    lines = read_results(tmp_path / "r")
    assert all(r["explanations"] and "cf_drop_cited" not in r for r in lines)


def test_two_stage_counterfactual_reranks_the_systems_own_candidates(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str | None, list[str]]] = []
    real = Recommender.rank_many

    def spy(self: Recommender, jobs: Any) -> list[Recommendation]:
        seen.extend((req.user_id, [getattr(c, "id", c) for c in cands]) for cands, req in jobs)
        return real(self, jobs)

    monkeypatch.setattr(Recommender, "rank_many", spy)
    exp = _experiment(
        data,
        variants=[{"name": "evidence"}],
        protocol={"kind": "two-stage", "n_candidates": 6, "users": 4, "min_history": 3},
        baselines=[],
    )
    Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first")).run()
    lines = {r["user_id"]: r for r in read_results(tmp_path / "r")}
    assert seen and any(r["cf_drop_cited"] is not None for r in lines.values())
    for user, cands in seen:
        assert user is not None
        assert set(cands) == set(lines[user]["ranked"]) and len(cands) == 6
