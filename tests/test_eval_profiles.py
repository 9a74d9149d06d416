"""Eval switches: profiles and enrichment reach the prompt, label-blind and replayable;
history truncation (simulated short histories) and the per-segment summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from genre_agent.catalog.items import Item
from genre_agent.config import ProfileConfig
from genre_agent.errors import ConfigError, GenreError
from genre_agent.llm import FakeLLM
from genre_agent.llm.base import Generation, GenRequest, LabelScores, ScoreRequest
from genre_agent.service.profiles import ProfileError, ProfileRecord, Profiles, ProfileStore
from genre_eval.cli import app
from genre_eval.datasets import DatasetConfig, load_dataset
from genre_eval.fixtures import tiny_experiment, write_jsonl_dataset
from genre_eval.protocols import ProtocolConfig, build_cases, history_rows
from genre_eval.report import write_report
from genre_eval.runner import Runner, read_results
from genre_eval.stats import bootstrap_ci
from genre_eval.summary import segment_summary, summarize_prepared

PROFILE = {"profile.use_in_rerank": True}
ENRICH = {"enrich.enabled": True}


def experiment(data: Path, variants: list[dict[str, Any]], **extra: Any):
    config = {
        "llm": {"engine": "fake"},
        "embedder": {"kind": "fake"},
        "ranking": {"mode": "scoring", "k": 8, "max_item_chars": 400, "rationale_top_r": 0},
        "profile": {"max_history": 4},
    }
    spec: dict[str, Any] = {"config": config, "baselines": ["popularity", "itemknn"]}
    return tiny_experiment(data, variants=variants, **{**spec, **extra})


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_jsonl_dataset(tmp_path / "data")


class Recording:
    """An llm_factory that keeps every FakeLLM it hands out, in variant order."""

    def __init__(self, script: Any = "first") -> None:
        self.script = script
        self.llms: list[FakeLLM] = []

    def __call__(self, cfg: Any) -> FakeLLM:
        self.llms.append(FakeLLM(self.script))
        return self.llms[-1]


class Exploding:
    """FakeLLM's identity, but every real call fails: proves a replay is served by the cache."""

    model_id, revision = "fake:first", "0"

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        raise AssertionError(f"cache miss for {len(requests)} generation(s)")

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        raise AssertionError(f"cache miss for {len(requests)} score request(s)")

    def close(self) -> None: ...


def _case_of(req: ScoreRequest, cases: list[Any]) -> Any:
    ids = set(req.hint["candidate_ids"])
    (case,) = [c for c in cases if set(c.candidates) == ids]
    return case


def test_profile_switch_changes_the_prompt_label_blind(data: Path, tmp_path: Path) -> None:
    exp = experiment(data, [{"name": "plain"}, {"name": "prof", "overrides": PROFILE}])
    factory = Recording()
    run = Runner(exp, tmp_path / "r", llm_factory=factory)
    run.run()
    plain, prof = factory.llms
    cases, items = run.prepared.cases, run.prepared.ds.items
    assert not plain.requests  # no profile, no enrichment: scoring passes only
    assert all("User profile:" not in r.messages[1].content for r in plain.score_requests)
    # One batched profile call per batch of users (batch_size 3, 8 users), nothing else.
    profile_reqs = [r for r in prof.requests if r.hint["task"] == "profile"]
    assert len(profile_reqs) == len(cases) == 8
    assert len(prof.requests) == len(profile_reqs)
    by_user = {r["user_id"]: r for r in read_results(tmp_path / "r") if r["system"] == "prof"}
    # Every prof prompt differs from plain's (the shared LLM cache would answer a repeat).
    assert len(prof.score_requests) == len(plain.score_requests) == 8
    for req in prof.score_requests:
        case = _case_of(req, cases)
        text = req.messages[1].content
        # The profile block is there, and it is this user's profile.
        profile_text = by_user[case.user_id]["profile_text"]
        assert profile_text and "Fake profile of a user who liked" in profile_text
        assert f"User profile:\n<data>{profile_text}</data>" in text
        # The target is in the prompt exactly once: as one of the candidates.
        assert text.count(items[case.target].title) == 1
    # Each profile prompt is built from its user's visible history alone: the last 4 liked
    # and last 4 low-rated interactions before the target (profile.max_history = 4).
    expected = []
    for case in cases:
        rows = history_rows(run.prepared.ds, case)
        liked = [r.item_id for r in rows if r.rating is None or r.rating >= 3.5][-4:]
        low = [r.item_id for r in rows if r.rating is not None and r.rating < 3.5][-4:]
        expected.append(liked + low)
    assert sorted(r.hint["history_ids"] for r in profile_reqs) == sorted(expected)
    targets = {items[c.target].title for c in cases}
    for req in profile_reqs:
        shown = req.messages[1].content
        assert not any(
            f"] {t}" in shown for t in targets - {items[i].title for i in req.hint["history_ids"]}
        )
    # The two variants rank different prompts; records say which profile was used.
    s = summarize_prepared(tmp_path / "r", run.prepared)
    assert s["variants"]["prof"]["profile_in_rerank"] is True
    assert s["variants"]["prof"]["profile_failures"] == 0
    assert s["variants"]["plain"]["profile_in_rerank"] is False


def test_profile_is_built_from_the_visible_history_only(data: Path) -> None:
    ds = load_dataset(DatasetConfig(kind="jsonl", path=data))
    cfg = ProtocolConfig(n_candidates=8, users=8, min_history=3, max_history=2)
    for case in build_cases(ds, cfg, "test"):
        rows = history_rows(ds, case)
        assert tuple(r.item_id for r in rows) == case.history and len(rows) == 2
        full = ds.by_user[case.user_id]
        assert rows == full[-3:-1]  # the two interactions just before the test target


def test_enrichment_reaches_the_prompt_for_exactly_the_candidates(
    data: Path, tmp_path: Path
) -> None:
    exp = experiment(data, [{"name": "plain"}, {"name": "enr", "overrides": ENRICH}])
    factory = Recording()
    run = Runner(exp, tmp_path / "r", llm_factory=factory)
    run.run()
    plain, enr = factory.llms
    cases = run.prepared.cases
    asked = [r.hint["item_id"] for r in enr.requests]
    assert all(r.hint["task"] == "enrich" for r in enr.requests)
    assert sorted(asked) == sorted({i for c in cases for i in c.candidates})
    assert len(enr.score_requests) == len(plain.score_requests) == 8
    for req in enr.score_requests:
        text = req.messages[1].content
        assert text.count("Summary: Fake summary of") == len(req.labels)
    for req in plain.score_requests:
        assert "Fake summary" not in req.messages[1].content
    recs = [r for r in read_results(tmp_path / "r") if r["system"] == "enr"]
    assert all(r["enriched_candidates"] == 8 for r in recs)
    assert run.variant_meta["enr"]["enriched_items"] == len(asked)
    assert run.variant_meta["enr"]["enrich_in_prompt"] is True


def test_invalid_enrichment_leaves_the_item_as_it_was(data: Path, tmp_path: Path) -> None:
    exp = experiment(data, [{"name": "enr", "overrides": ENRICH}], baselines=[])
    ds = load_dataset(DatasetConfig(kind="jsonl", path=data))
    victim = build_cases(ds, exp.protocol, "test")[0].candidates[0]

    def script(req: GenRequest) -> str:
        if req.hint.get("task") == "enrich" and req.hint["item_id"] == victim:
            return '{"summary": "x", "keywords": []}'  # invalid: no keywords
        return FakeLLM("first")._answer(req)

    fake = FakeLLM(script)
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: fake)
    run.run()
    assert run.variant_meta["enr"]["enrich_invalid"] == 1
    recs = {r["user_id"]: r for r in read_results(tmp_path / "r")}
    case = run.prepared.cases[0]
    assert recs[case.user_id]["enriched_candidates"] == 7 and not recs[case.user_id]["failed"]
    title = ds.items[victim].title
    prompt = next(r for r in fake.score_requests if victim in r.hint["candidate_ids"])
    line = next(x for x in prompt.messages[1].content.splitlines() if f"] {title}:" in x)
    assert "Summary:" not in line


def test_profile_failure_is_a_failed_request(data: Path, tmp_path: Path) -> None:
    def script(req: GenRequest) -> str:
        if req.hint.get("task") == "profile":
            return '{"liked": ['
        return FakeLLM("first")._answer(req)

    exp = experiment(data, [{"name": "prof", "overrides": PROFILE}])
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM(script))
    run.run()
    recs = [r for r in read_results(tmp_path / "r") if r["system"] == "prof"]
    assert len(recs) == 8 and all(r["failed"] and "profile" in r["error"] for r in recs)
    assert all(v == 0.0 for r in recs for v in r["metrics"].values())
    assert run.variant_meta["prof"]["profile_failures"] == 8


def test_profile_variant_replays_bit_identical_from_cache(data: Path, tmp_path: Path) -> None:
    variants = [{"name": "both", "overrides": {**PROFILE, **ENRICH}}]
    cache = tmp_path / "cache.sqlite"
    first = Runner(
        experiment(data, variants), tmp_path / "r1", llm_factory=Recording(), cache_path=cache
    )
    first.run()
    replay = Runner(
        experiment(data, variants),
        tmp_path / "r2",
        llm_factory=lambda c: Exploding(),
        cache_path=cache,
    )
    replay.run()

    def lines(out: Path) -> list[dict[str, Any]]:
        drop = {"latency_s", "wall_s", "cache_hit_rate"}
        return [{k: v for k, v in r.items() if k not in drop} for r in read_results(out)]

    assert lines(tmp_path / "r1") == lines(tmp_path / "r2")
    both = [r for r in lines(tmp_path / "r2") if r["system"] == "both"]
    assert all(r["profile_text"] and r["enriched_candidates"] == 8 for r in both)


def test_profile_in_retrieval_is_refused(data: Path, tmp_path: Path) -> None:
    exp = experiment(data, [{"name": "ret", "overrides": {"profile.use_in_retrieval": True}}])
    with pytest.raises(ConfigError, match="use_in_retrieval has no effect"):
        Runner(exp, tmp_path / "r", llm_factory=Recording())


def test_history_truncation_keeps_users_and_candidates(data: Path, tmp_path: Path) -> None:
    ds = load_dataset(DatasetConfig(kind="jsonl", path=data))
    full = build_cases(ds, ProtocolConfig(n_candidates=8, users=8, min_history=3), "test")
    cut = build_cases(
        ds, ProtocolConfig(n_candidates=8, users=8, min_history=3, max_history=2), "test"
    )
    assert [(c.user_id, c.target, c.candidates) for c in full] == [
        (c.user_id, c.target, c.candidates) for c in cut
    ]
    assert all(b.history == a.history[-2:] for a, b in zip(full, cut, strict=True))
    assert any(len(a.history) > 2 for a in full)
    with pytest.raises(ValueError):
        ProtocolConfig(max_history=0)
    # The runner and the user-based baselines see the cut history; lines record its length.
    exp = experiment(
        data,
        [{"name": "plain"}],
        protocol={
            "kind": "sampled",
            "n_candidates": 8,
            "users": 8,
            "min_history": 3,
            "max_history": 2,
        },
    )
    factory = Recording()
    runner = Runner(exp, tmp_path / "r", llm_factory=factory)
    runner.run()
    assert {r["history_len"] for r in read_results(tmp_path / "r")} == {2}
    # The prompt lists the liked ones among the 2 visible items (as serving does: ratings
    # below retrieval.min_liked_rating are not "liked").
    ds = runner.prepared.ds
    want = sorted(
        sum(1 for r in history_rows(ds, c) if r.rating is None or r.rating >= 3.5)
        for c in runner.prepared.cases
    )
    got = []
    for req in factory.llms[0].score_requests:
        text = req.messages[1].content
        liked = text.split("Items the user liked, oldest first:")
        got.append(liked[1].split("</data>")[0].count("\n- ") if len(liked) > 1 else 0)
    assert sorted(got) == want and max(want) > 0


def _rec(system: str, kind: str, user: str, hl: int, ndcg: float) -> dict[str, Any]:
    return {
        "system": system,
        "kind": kind,
        "seed": 0,
        "user_id": user,
        "history_len": hl,
        "failed": False,
        "metrics": {"ndcg@5": ndcg},
    }


def test_segment_summary_splits_users_and_pairs_within_groups() -> None:
    recs = []
    for n in range(10):
        hl = 3 if n < 4 else 9
        recs.append(_rec("plain", "llm", f"u{n}", hl, 0.1 * n))
        recs.append(_rec("prof", "llm", f"u{n}", hl, 0.1 * n + (0.2 if hl <= 5 else 0.0)))
        recs.append(_rec("pop", "baseline", f"u{n}", hl, 0.5))
    seg = segment_summary(recs, [5], "ndcg@5", 200, 200)
    short, long_ = seg["groups"]
    assert (short["label"], short["users"], long_["label"], long_["users"]) == ("<=5", 4, ">5", 6)
    want = bootstrap_ci([0.0, 0.1, 0.2, 0.3], 200)
    got = short["systems"]["plain"]["metrics"]["ndcg@5"]
    assert got == {"mean": want.mean, "low": want.low, "high": want.high}
    diff = {(c["a"], c["b"]): c for c in short["comparisons"]}
    assert diff[("prof", "plain")]["diff"] == pytest.approx(0.2)
    assert diff[("prof", "plain")]["users"] == 4
    assert {(c["a"], c["b"]) for c in long_["comparisons"]} == {
        ("prof", "plain"),
        ("plain", "pop"),
        ("prof", "pop"),
    }
    assert next(c for c in long_["comparisons"] if c["a"] == "prof" and c["b"] == "plain")[
        "diff"
    ] == pytest.approx(0.0)
    three = segment_summary(recs, [2, 5], "ndcg@5", 200, 200)
    assert [g["label"] for g in three["groups"]] == ["<=2", "3-5", ">5"]
    assert three["groups"][0]["users"] == 0 and three["groups"][0]["systems"] == {}
    old = [{k: v for k, v in recs[0].items() if k != "history_len"}]
    with pytest.raises(GenreError, match="history_len"):
        segment_summary(old, [5], "ndcg@5", 200, 200)


def test_segments_in_report_and_pooled_over_two_runs(data: Path, tmp_path: Path) -> None:
    variants = [{"name": "plain"}, {"name": "prof", "overrides": PROFILE}]
    cache = tmp_path / "cache.sqlite"
    full = Runner(
        experiment(data, variants, segments=[5]),
        tmp_path / "full",
        llm_factory=Recording(),
        cache_path=cache,
    )
    full.run()
    s = summarize_prepared(tmp_path / "full", full.prepared)
    groups = {g["label"]: g for g in s["segments"]["groups"]}
    assert groups["<=5"]["users"] == 0 and groups[">5"]["users"] == 8
    md, _ = write_report(tmp_path / "full")
    assert "ndcg@5 by visible history length" in md.read_text()
    cold = experiment(
        data,
        variants,
        segments=[5],
        protocol={
            "kind": "sampled",
            "n_candidates": 8,
            "users": 8,
            "min_history": 3,
            "max_history": 5,
        },
    )
    Runner(cold, tmp_path / "cold", llm_factory=Recording(), cache_path=cache).run()
    res = CliRunner().invoke(
        app,
        [
            "segments",
            str(tmp_path / "full"),
            str(tmp_path / "cold"),
            "--at",
            "5",
            "--out",
            str(tmp_path / "seg"),
        ],
    )
    assert res.exit_code == 0, res.output
    seg = json.loads((tmp_path / "seg" / "segments.json").read_text())
    assert [(g["label"], g["users"]) for g in seg["groups"]] == [("<=5", 8), (">5", 8)]
    assert [r["max_history"] for r in seg["runs"]] == [None, 5]
    md_text = (tmp_path / "seg" / "segments.md").read_text()
    assert "| system | kind | <=5 (n=8) | >5 (n=8) |" in md_text
    assert "| prof | plain |" in md_text
    # The same run twice would count users twice in one group: refused.
    res = CliRunner().invoke(
        app, ["segments", str(tmp_path / "full"), str(tmp_path / "full"), "--at", "5"]
    )
    assert isinstance(res.exception, GenreError) and "both put user" in str(res.exception)


def test_build_many_batches_misses_and_isolates_failures() -> None:
    def script(req: GenRequest) -> str:
        if "BAD" in req.messages[1].content:
            return '{"liked": ['
        return FakeLLM("first")._answer(req)

    llm = FakeLLM(script)
    profiles = Profiles(llm, ProfileStore(":memory:"), ProfileConfig())
    a = [Item(id="1", title="One"), Item(id="2", title="Two")]
    bad = [Item(id="3", title="BAD")]
    out = profiles.build_many([("a", a, []), ("b", bad, []), ("c", [], [])])
    assert isinstance(out[0], ProfileRecord) and out[0].profile.liked[0].evidence == ["1", "2"]
    assert isinstance(out[1], ProfileError) and isinstance(out[2], ProfileError)
    assert len(llm.requests) == 2  # one batched call for the two users with a history
    again = profiles.build_many([("a", a, []), ("b", bad, [])])
    assert again[0] == out[0] and len(llm.requests) == 3  # a reused; b asked again


def test_profiles_experiment_file_names_the_four_switch_settings() -> None:
    from genre_eval.cli import _load

    path = Path(__file__).parents[1] / "eval" / "experiments" / "ml_small_profiles.toml"
    exp = _load(path, 150, 5)
    assert (exp.protocol.users, exp.protocol.max_history, exp.segments) == (150, 5, [5])
    switches = {}
    for v in exp.variants:
        cfg = exp.variant_config(v)
        assert cfg.ranking.mode == "scoring" and cfg.llm.model == "qwen2.5-coder-0.5b"
        switches[v.name] = (cfg.profile.use_in_rerank, cfg.enrich.enabled)
    assert [v.ranker for v in exp.variants].count("bm25") == 1
    assert switches == {
        "plain": (False, False),
        "profile": (True, False),
        "enrich": (False, True),
        "profile-enrich": (True, True),
        "enrich-bm25": (False, True),
    }
    with pytest.raises(ValueError):
        _load(path, None, 0)


def test_bm25_ranker_measures_enrichment_on_retrieval(data: Path, tmp_path: Path) -> None:
    """ranker = "bm25": no LLM ranking; without enrichment it is the bm25 baseline exactly,
    with it the enriched text is what BM25 indexes (a keyword-stuffed candidate wins)."""
    exp = experiment(
        data,
        [
            {"name": "plain-bm25", "ranker": "bm25"},
            {"name": "enr-bm25", "ranker": "bm25", "overrides": ENRICH},
        ],
        baselines=["bm25"],
    )
    ds = load_dataset(DatasetConfig(kind="jsonl", path=data))
    case = build_cases(ds, exp.protocol, "test")[0]
    history_words = " ".join(ds.items[h].document() for h in case.history).replace('"', "")
    # The victim: the candidate the plain bm25 ranks last for this user.
    suite_run = Runner(exp.model_copy(update={"variants": []}), tmp_path / "b")
    suite_run.run()
    victim = next(r for r in read_results(tmp_path / "b") if r["user_id"] == case.user_id)[
        "ranked"
    ][-1]

    def script(req: GenRequest) -> str:
        if req.hint.get("task") == "enrich" and req.hint["item_id"] == victim:
            return json.dumps({"summary": history_words[:150], "keywords": ["x", "y", "z"]})
        return FakeLLM("first")._answer(req)

    fake = FakeLLM(script)
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: fake)
    run.run()
    recs = read_results(tmp_path / "r")
    by = {
        s: {r["user_id"]: r for r in recs if r["system"] == s}
        for s in ("bm25", "plain-bm25", "enr-bm25")
    }
    assert {u: r["ranked"] for u, r in by["plain-bm25"].items()} == {
        u: r["ranked"] for u, r in by["bm25"].items()
    }
    assert by["enr-bm25"][case.user_id]["ranked"][0] == victim
    assert all(r["enriched_candidates"] == 8 for r in by["enr-bm25"].values())
    assert fake.score_requests == []  # the LLM enriched, it did not rank


def test_bm25_ranker_refuses_llm_only_switches(data: Path, tmp_path: Path) -> None:
    exp = experiment(data, [{"name": "b", "ranker": "bm25", "overrides": PROFILE}])
    with pytest.raises(ConfigError, match="ranker = 'bm25' has no prompt"):
        Runner(exp, tmp_path / "r", llm_factory=Recording())
