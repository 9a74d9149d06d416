"""Runner: cache replay is bit-identical, interrupted runs resume, failures count as 0."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from genre_agent.config import DEFAULT_SOURCES
from genre_agent.errors import ConfigError, GenreError
from genre_agent.llm import FakeLLM
from genre_agent.llm.base import Generation, GenRequest, Message
from genre_eval.cache import CachingLLM, request_key
from genre_eval.experiment import load_experiment
from genre_eval.fixtures import tiny_experiment, write_jsonl_dataset
from genre_eval.runner import Runner, read_results
from genre_eval.summary import summarize_prepared

experiment = tiny_experiment


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_jsonl_dataset(tmp_path / "data")


class Exploding:
    """Same identity as FakeLLM('first'), but any real call fails: proves a cache replay."""

    model_id, revision = "fake:first", "0"

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        raise AssertionError(f"cache miss for {len(requests)} request(s)")

    def close(self) -> None: ...


class Interrupting(FakeLLM):
    def __init__(self, after: int) -> None:
        super().__init__("first")
        self.calls, self.after = 0, after

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return super().generate(requests)


def _metrics(out: Path) -> dict[tuple[str, int, str], dict[str, float]]:
    return {(r["system"], r["seed"], r["user_id"]): r["metrics"] for r in read_results(out)}


def test_run_covers_every_system_and_user(data: Path, tmp_path: Path) -> None:
    exp = experiment(data)
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first"))
    run.run()
    recs = read_results(tmp_path / "r")
    systems = {r["system"] for r in recs}
    assert systems == {"random", "popularity", "itemknn", "a", "b"}
    assert len(recs) == 5 * 8
    llm = [r for r in recs if r["kind"] == "llm"]
    assert all(len(r["template_sha256"]) == 64 and r["model_id"] == "fake:first" for r in llm)
    assert all(r["dataset_sha256"] == run.prepared.ds.sha256 for r in recs)
    assert len({r["config_sha256"] for r in llm}) == 2
    s = summarize_prepared(tmp_path / "r", run.prepared)
    assert s["systems"]["a"]["complete"] and s["systems"]["a"]["users"] == 8
    assert {(c["a"], c["b"]) for c in s["comparisons"]} >= {("a", "b"), ("a", "random")}


def test_replay_from_cache_is_bit_identical(data: Path, tmp_path: Path) -> None:
    exp = experiment(data)
    cache = tmp_path / "cache.sqlite"
    first = Runner(exp, tmp_path / "r1", llm_factory=lambda c: FakeLLM("first"), cache_path=cache)
    first.run()
    replay = Runner(exp, tmp_path / "r2", llm_factory=lambda c: Exploding(), cache_path=cache)
    replay.run()
    assert _metrics(tmp_path / "r1") == _metrics(tmp_path / "r2")
    s1 = summarize_prepared(tmp_path / "r1", first.prepared)
    s2 = summarize_prepared(tmp_path / "r2", replay.prepared)
    strip = ("latency_s_mean", "users_per_min", "cache_hit_rate")
    # The replay is labelled as such: no speed is claimed from cached answers.
    llm_names = [n for n, e in s1["systems"].items() if e["kind"] == "llm"]
    assert llm_names
    for name in llm_names:
        assert s1["systems"][name]["cache_hit_rate"] == 0.0
        assert s1["systems"][name]["users_per_min"] is not None
        assert s2["systems"][name]["cache_hit_rate"] == 1.0
        assert s2["systems"][name]["users_per_min"] is None
        assert s2["systems"][name]["latency_s_mean"] is None
    for name in s1["systems"]:
        a = {k: v for k, v in s1["systems"][name].items() if k not in strip}
        b = {k: v for k, v in s2["systems"][name].items() if k not in strip}
        assert a == b
    with pytest.raises(AssertionError, match="cache miss"):
        Runner(
            experiment(data, variants=[{"name": "c", "k": 2}], baselines=[]),
            tmp_path / "r3",
            llm_factory=lambda c: Exploding(),
            cache_path=cache,
        ).run()


def test_interrupted_run_resumes_without_duplicates(data: Path, tmp_path: Path) -> None:
    exp = experiment(data)
    Runner(exp, tmp_path / "full", llm_factory=lambda c: FakeLLM("first")).run()
    with pytest.raises(KeyboardInterrupt):
        Runner(exp, tmp_path / "part", llm_factory=lambda c: Interrupting(after=2)).run()
    partial = read_results(tmp_path / "part")
    assert 0 < len([r for r in partial if r["kind"] == "llm"]) < 16
    Runner(exp, tmp_path / "part", llm_factory=lambda c: FakeLLM("first")).run()
    keys = [(r["system"], r["seed"], r["user_id"]) for r in read_results(tmp_path / "part")]
    assert len(keys) == len(set(keys)) == 40
    assert _metrics(tmp_path / "part") == _metrics(tmp_path / "full")


def test_failed_requests_count_as_zero_and_are_kept(data: Path, tmp_path: Path) -> None:
    exp = experiment(data, variants=[{"name": "bad"}], baselines=["random"])
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("malformed"))
    run.run()
    bad = [r for r in read_results(tmp_path / "r") if r["system"] == "bad"]
    assert len(bad) == 8 and all(r["failed"] and r["ranked"] == [] for r in bad)
    assert all(v == 0.0 for r in bad for v in r["metrics"].values())
    s = summarize_prepared(tmp_path / "r", run.prepared)
    assert s["systems"]["bad"]["failure_rate"] == 1.0 and s["systems"]["bad"]["users"] == 8


def test_rejected_entries_are_counted(data: Path, tmp_path: Path) -> None:
    exp = experiment(data, variants=[{"name": "dup"}], baselines=[])
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("duplicate"))
    run.run()
    s = summarize_prepared(tmp_path / "r", run.prepared)
    assert s["systems"]["dup"]["rejected_per_request"] == {"duplicate": 1.0}


def test_fusion_weight_fuses_like_serving(data: Path, tmp_path: Path) -> None:
    """A variant's fusion_weight is ranking.fusion_weight: w * LLM + (1 - w) * fusion retriever.

    w = 0 must reproduce the fusion baseline's order exactly; w = 1 the LLM's own order."""
    scoring = {"mode": "scoring", "k": 8}
    exp = experiment(
        data,
        variants=[
            {"name": "llm", **scoring},
            {"name": "fused", **scoring, "fusion_weight": 0.5},
            {"name": "retrieval", **scoring, "fusion_weight": 0.0},
        ],
        baselines=["fusion"],
        # The fusion baseline with the weights the variants' config serves.
        fusion_weights=dict(DEFAULT_SOURCES),
    )
    Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first")).run()
    recs = read_results(tmp_path / "r")
    by = {
        s: {r["user_id"]: r["ranked"] for r in recs if r["system"] == s}
        for s in ("llm", "fused", "retrieval", "fusion")
    }
    assert by["retrieval"] == by["fusion"]
    assert by["llm"] != by["fused"] != by["fusion"]
    assert all(sorted(by["llm"][u]) == sorted(by["fused"][u]) for u in by["llm"])
    assert exp.variant_config(exp.variants[1]).ranking.fusion_weight == 0.5


def test_fusion_weight_on_a_listwise_variant_is_refused(data: Path) -> None:
    with pytest.raises(ConfigError, match="(?s)variant 'lw'.*needs mode = 'scoring'"):
        experiment(data, variants=[{"name": "lw", "mode": "listwise", "fusion_weight": 0.5}])


def test_cache_key_ignores_hint_but_not_prompt() -> None:
    msgs = (Message("user", "x"),)
    a = GenRequest(messages=msgs, hint={"target": "1"})
    b = GenRequest(messages=msgs, hint={"target": "2"})
    c = GenRequest(messages=(Message("user", "y"),))
    assert request_key(a, "m", "r") == request_key(b, "m", "r") != request_key(c, "m", "r")
    assert request_key(a, "m", "r") != request_key(a, "m", "r2")


def test_caching_llm_forwards_only_misses(tmp_path: Path) -> None:
    inner = FakeLLM(lambda r: r.messages[0].content.upper())
    llm = CachingLLM(inner, tmp_path / "c.sqlite")
    reqs = [GenRequest(messages=(Message("user", t),)) for t in ("a", "b")]
    assert [g.text for g in llm.generate(reqs)] == ["A", "B"]
    more = [*reqs, GenRequest(messages=(Message("user", "c"),))]
    assert [g.text for g in llm.generate(more)] == ["A", "B", "C"]
    assert len(inner.requests) == 3 and (llm.hits, llm.misses) == (2, 3)


def test_bad_experiment_names_the_field(tmp_path: Path, data: Path) -> None:
    from genre_agent.errors import ConfigError

    path = tmp_path / "e.toml"
    path.write_text(
        f'name = "x"\n[dataset]\nkind = "jsonl"\npath = "{data}"\n'
        '[[variants]]\nname = "v"\ntemprature = 0.5\n'
    )
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(path) in str(err.value) and "variants.0.temprature: unknown key" in str(err.value)
    path.write_text(
        f'name = "x"\n[dataset]\nkind = "jsonl"\npath = "{data}"\n'
        '[[variants]]\nname = "v"\noverrides = { "ranking.kk" = 3 }\n'
    )
    with pytest.raises(ConfigError, match="(?s)variant .v.*ranking.kk: unknown key"):
        load_experiment(path)


@pytest.mark.parametrize("kind", ["popularity", "retriever", "two-stage"])
def test_hard_negative_and_two_stage_protocols_run(data: Path, tmp_path: Path, kind: str) -> None:
    exp = experiment(
        data,
        protocol={
            "kind": kind,
            "n_candidates": 6,
            "users": 8,
            "min_history": 3,
            "retriever": "fusion",
        },
        variants=[{"name": "a"}],
        baselines=["popularity"],
    )
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first"))
    run.run()
    s = summarize_prepared(tmp_path / "r", run.prepared)
    assert s["systems"]["a"]["users"] == 8
    if kind == "two-stage":
        # Each system retrieves its own 6 candidates; its recall is theirs.
        for name in ("a", "popularity"):
            recs = [r for r in read_results(tmp_path / "r") if r["system"] == name]
            recall = sum(r["candidate_recall"] for r in recs) / len(recs)
            assert s["systems"][name]["candidate_recall"]["mean"] == pytest.approx(recall)
            assert all(r["metrics"]["hr@5"] == 0.0 for r in recs if not r["candidate_recall"])
        assert any(r["candidate_recall"] == 0 for r in read_results(tmp_path / "r"))
        assert any(r["candidate_recall"] == 1 for r in read_results(tmp_path / "r"))
    else:
        assert "candidate_recall" not in s["systems"]["a"]


def test_scoring_mode_variant_runs_through_make_ranker(data: Path, tmp_path: Path) -> None:
    exp = experiment(data, variants=[{"name": "s", "mode": "scoring"}], baselines=[])
    run = Runner(exp, tmp_path / "r", llm_factory=lambda c: FakeLLM("first"))
    run.run()
    recs = read_results(tmp_path / "r")
    assert len(recs) == 8 and not any(r["failed"] for r in recs)
    assert run.variant_meta["s"]["mode"] == "scoring"
    assert all(
        sorted(r["ranked"]) == sorted(c.candidates)
        for r, c in zip(recs, run.prepared.cases, strict=True)
    )


class ExplodingScorer(Exploding):
    def score_labels(self, requests: Sequence[Any]) -> list[Any]:
        raise AssertionError(f"score cache miss for {len(requests)} request(s)")


def test_scoring_variant_replays_from_cache_without_the_model(data: Path, tmp_path: Path) -> None:
    exp = experiment(
        data,
        variants=[
            {"name": "s", "mode": "scoring"},
            {
                "name": "s-cal",
                "mode": "scoring",
                "overrides": {"ranking.calibration": "content_free"},
            },
        ],
        baselines=[],
    )
    cache = tmp_path / "cache.sqlite"
    Runner(exp, tmp_path / "r1", llm_factory=lambda c: FakeLLM("first"), cache_path=cache).run()
    Runner(exp, tmp_path / "r2", llm_factory=lambda c: ExplodingScorer(), cache_path=cache).run()
    assert _metrics(tmp_path / "r1") == _metrics(tmp_path / "r2")
    # A scoring variant with a different prompt is a miss, not a silent replay.
    with pytest.raises(AssertionError, match="score cache miss"):
        Runner(
            experiment(data, variants=[{"name": "s2", "mode": "scoring", "history_len": 2}]),
            tmp_path / "r3",
            llm_factory=lambda c: ExplodingScorer(),
            cache_path=cache,
        ).run()


def test_manifest_keeps_variants_of_earlier_invocations(data: Path, tmp_path: Path) -> None:
    import json as _json

    exp = experiment(data)
    for name in ("a", "b"):
        only = exp.model_copy(update={"variants": [v for v in exp.variants if v.name == name]})
        Runner(only, tmp_path / "r", llm_factory=lambda c: FakeLLM("first")).run()
    manifest = _json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert set(manifest["variants"]) == {"a", "b"}


class SlowFake(FakeLLM):
    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        import time as _time

        _time.sleep(0.02)
        return super().generate(requests)


def test_latency_counts_every_llm_stage_of_listwise(data: Path, tmp_path: Path) -> None:
    """two_phase listwise times its stages as llm_rank + llm_rationales: both count."""
    exp = experiment(data, variants=[{"name": "a", "k": 2}], baselines=[], batch_size=1)
    Runner(exp, tmp_path / "r", llm_factory=lambda c: SlowFake("first")).run()
    recs = read_results(tmp_path / "r")
    # one ids call + one rationale call per user, each sleeping 20 ms
    assert all(r["latency_s"] >= 0.04 for r in recs)


def test_resume_with_a_changed_variant_config_is_refused(data: Path, tmp_path: Path) -> None:
    """Stored results of variant 'a' came from k=10; asking for k=3 under the same name in
    the same run directory must not silently keep the old lines."""
    Runner(
        experiment(data, variants=[{"name": "a"}], baselines=[]),
        tmp_path / "r",
        llm_factory=lambda c: FakeLLM("first"),
    ).run()
    same = Runner(
        experiment(data, variants=[{"name": "a"}], baselines=[]),
        tmp_path / "r",
        llm_factory=lambda c: FakeLLM("first"),
    )
    assert same.done  # an identical config resumes
    with pytest.raises(GenreError, match="system 'a' already has results from another config"):
        Runner(
            experiment(data, variants=[{"name": "a", "k": 3}], baselines=[]),
            tmp_path / "r",
            llm_factory=lambda c: FakeLLM("first"),
        )
