"""EngineOwner with fake engines: batching, error fan-out, timeouts, crashes, wrapping."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from genre_agent.config import LLMConfig
from genre_agent.errors import GenreError, ModelError
from genre_agent.llm.base import (
    Generation,
    GenRequest,
    LabelScorer,
    LabelScores,
    Message,
    ScoreRequest,
)
from genre_agent.llm.fake import FakeLLM
from genre_agent.llm.faults import LLMTimeout, LLMUnavailable
from genre_agent.llm.owner import EngineOwner, ScoringEngineOwner, own

JOIN_S = 30  # a safety net: a broken owner fails the test instead of hanging the suite


def req(text: str) -> GenRequest:
    return GenRequest(messages=(Message("user", text),))


def sreq(text: str) -> ScoreRequest:
    return ScoreRequest(messages=(Message("user", text),), labels=("A", "B"))


class Gated:
    """Not thread-safe on purpose: records every call, detects overlapping calls, and can
    hold its first call until the test releases it (so callers pile up in the queue)."""

    def __init__(self, hold_first: bool = True) -> None:
        self.model_id = "gated"
        self.revision = "0"
        self.calls: list[tuple[str, list[str]]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not hold_first:
            self.gate.set()
        self.inside = 0
        self.overlaps = 0
        self.closed = False
        self.threads: set[str] = set()

    def _enter(self, kind: str, texts: list[str]) -> None:
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        self.threads.add(threading.current_thread().name)
        self.calls.append((kind, texts))
        self.entered.set()
        self.gate.wait(JOIN_S)

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        texts = [r.messages[0].content for r in requests]
        self._enter("generate", texts)
        try:
            return [Generation(f"echo {t}", 1, 1, 0.0) for t in texts]
        finally:
            self.inside -= 1

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        texts = [r.messages[0].content for r in requests]
        self._enter("score", texts)
        try:
            return [LabelScores({"A": -0.1, "B": -float(len(t))}) for t in texts]
        finally:
            self.inside -= 1

    def reset_prefix_cache(self) -> bool:
        self.threads.add(threading.current_thread().name)
        return True

    def close(self) -> None:
        self.closed = True


def in_threads(fns: list[Any]) -> tuple[dict[int, Any], dict[int, BaseException]]:
    """Run each callable in its own thread; results and errors by index."""
    results: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}

    def run(i: int) -> None:
        try:
            results[i] = fns[i]()
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return results, errors


def wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + JOIN_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_waiting_callers_share_one_engine_call() -> None:
    eng = Gated()
    owner = own(eng, "gated", timeout_s=JOIN_S)
    n = 8
    results: dict[int, Any] = {}

    def first() -> Any:
        return owner.generate([req("c0")])

    t0 = threading.Thread(target=lambda: results.setdefault(0, first()), daemon=True)
    t0.start()
    assert eng.entered.wait(JOIN_S)
    # Callers 1..7 (with 1, 2 or 3 requests each) queue while call 1 is held.
    fns = [
        (lambda i=i: owner.generate([req(f"c{i}.{j}") for j in range(1 + i % 3)]))
        for i in range(1, n)
    ]
    threads_done: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: threads_done.update(zip(("res", "err"), in_threads(fns), strict=True)),
        daemon=True,
    )
    runner.start()
    wait_for(lambda: owner.stats.jobs == n, "7 queued callers")
    eng.gate.set()
    runner.join(JOIN_S)
    t0.join(JOIN_S)
    assert not threads_done["err"]
    assert [g.text for g in results[0]] == ["echo c0"]
    for idx, out in threads_done["res"].items():
        i = idx + 1
        assert [g.text for g in out] == [f"echo c{i}.{j}" for j in range(1 + i % 3)]
    # Two engine calls for 8 callers: the held one, then everything that queued behind it.
    assert [k for k, _ in eng.calls] == ["generate", "generate"]
    assert len(eng.calls[1][1]) == sum(1 + i % 3 for i in range(1, n))
    assert owner.stats.batches == 2 and owner.stats.jobs == n
    assert eng.overlaps == 0
    assert eng.threads == {"genre-engine-gated"}


def test_generate_and_score_batched_separately_in_one_round() -> None:
    eng = Gated()
    owner = own(eng, "gated", timeout_s=JOIN_S)
    assert isinstance(owner, ScoringEngineOwner) and isinstance(owner, LabelScorer)
    holder = threading.Thread(target=lambda: owner.generate([req("hold")]), daemon=True)
    holder.start()
    assert eng.entered.wait(JOIN_S)
    fns: list[Any] = [lambda i=i: owner.score_labels([sreq("x" * (i + 1))]) for i in range(3)]
    fns += [lambda i=i: owner.generate([req(f"g{i}")]) for i in range(3)]
    box: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: box.update(r=in_threads(fns)), daemon=True)
    runner.start()
    wait_for(lambda: owner.stats.jobs == 7, "6 queued callers")
    eng.gate.set()
    runner.join(JOIN_S)
    holder.join(JOIN_S)
    results, errors = box["r"]
    assert not errors
    for i in range(3):
        assert results[i][0].logprobs["B"] == -float(i + 1)  # each scorer got its own answer
        assert results[3 + i][0].text == f"echo g{i}"
    assert sorted(k for k, _ in eng.calls[1:]) == ["generate", "score"]
    assert owner.stats.batches == 3 and eng.overlaps == 0


def test_generate_only_engine_is_not_a_label_scorer() -> None:
    class GenOnly:
        model_id, revision = "g", "0"

        def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
            return [Generation("x", 0, 0, 0.0) for _ in requests]

        def close(self) -> None:
            return None

    owner = own(GenOnly(), "genonly", timeout_s=5)
    assert type(owner) is EngineOwner and not isinstance(owner, LabelScorer)
    assert not hasattr(owner, "score_labels")
    assert [g.text for g in owner.generate([req("a")])] == ["x"]


class Raising(Gated):
    def __init__(self, exc: BaseException | None, hold_first: bool = False) -> None:
        super().__init__(hold_first=hold_first)
        self.exc = exc

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        if self.exc is None:
            return super().generate(requests)
        self.calls.append(("generate", [r.messages[0].content for r in requests]))
        self.entered.set()
        self.gate.wait(JOIN_S)
        raise self.exc


def test_raising_engine_fails_every_caller_with_a_genre_error() -> None:
    eng = Raising(RuntimeError("boom\nsecond line of a long traceback"))
    owner = own(eng, "raising", timeout_s=JOIN_S)
    results, errors = in_threads([lambda i=i: owner.generate([req(f"c{i}")]) for i in range(6)])
    assert not results and len(errors) == 6
    for exc in errors.values():
        assert isinstance(exc, LLMUnavailable) and isinstance(exc, GenreError)
        msg = str(exc)
        assert "\n" not in msg and "'raising'" in msg and "RuntimeError: boom" in msg
    # Not fatal: the engine stays usable once it stops raising.
    eng.exc = None
    assert owner.generate([req("ok")])[0].text == "echo ok"


def test_engine_genre_errors_pass_through_unchanged() -> None:
    owner = own(Raising(ModelError("label 'AB' is 2 tokens")), "raising", timeout_s=JOIN_S)
    with pytest.raises(ModelError, match="label 'AB' is 2 tokens") as info:
        owner.generate([req("c")])
    assert not isinstance(info.value, LLMUnavailable)


def test_one_bad_request_fails_only_its_caller() -> None:
    class Picky(Gated):
        def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
            if any("poison" in r.messages[0].content for r in requests):
                self.calls.append(("generate", ["poison"]))
                raise ValueError("prompt too long")
            return super().generate(requests)

    eng = Picky()
    owner = own(eng, "picky", timeout_s=JOIN_S)
    holder = threading.Thread(target=lambda: owner.generate([req("hold")]), daemon=True)
    holder.start()
    assert eng.entered.wait(JOIN_S)
    texts = ["a", "poison", "b", "c"]
    box: dict[str, Any] = {}
    fns = [lambda t=t: owner.generate([req(t)]) for t in texts]
    runner = threading.Thread(target=lambda: box.update(r=in_threads(fns)), daemon=True)
    runner.start()
    wait_for(lambda: owner.stats.jobs == 5, "4 queued callers")
    eng.gate.set()
    runner.join(JOIN_S)
    holder.join(JOIN_S)
    results, errors = box["r"]
    assert set(errors) == {1} and "ValueError: prompt too long" in str(errors[1])
    assert {i: r[0].text for i, r in results.items()} == {0: "echo a", 2: "echo b", 3: "echo c"}


def test_hanging_engine_times_out_every_caller_then_fails_fast() -> None:
    eng = Gated()  # its first call never returns until the test ends
    owner = own(eng, "hanging", timeout_s=0.5)
    try:
        results, errors = in_threads([lambda i=i: owner.generate([req(f"c{i}")]) for i in range(5)])
        assert not results and len(errors) == 5
        for exc in errors.values():
            assert isinstance(exc, LLMTimeout) and isinstance(exc, GenreError)
            assert "no answer within 0.5 s" in str(exc) and "\n" not in str(exc)
        assert owner.stats.timeouts == 5
        # The engine thread is still stuck in call 1: new calls are refused, not queued.
        with pytest.raises(LLMUnavailable, match="is stuck: one call has not returned"):
            owner.generate([req("late")])
        assert owner.stats.jobs == 5
    finally:
        eng.gate.set()
    # Once the stuck call returns, the owner serves again; timed-out jobs were dropped.
    wait_for(lambda: owner._busy_since is None, "the stuck call to end")
    assert owner.generate([req("after")])[0].text == "echo after"
    assert len(eng.calls) == 2 and eng.calls[1] == ("generate", ["after"])


class EngineDeadError(RuntimeError):
    """Named like vLLM's: the engine cannot answer again."""


def test_fatal_crash_fails_waiting_callers_and_later_calls_fast() -> None:
    eng = Raising(EngineDeadError("EngineCore encountered an issue"), hold_first=True)
    owner = own(eng, "vllm", timeout_s=JOIN_S)
    box: dict[str, Any] = {}
    fns = [lambda i=i: owner.generate([req(f"c{i}")]) for i in range(4)]
    runner = threading.Thread(target=lambda: box.update(r=in_threads(fns)), daemon=True)
    runner.start()
    wait_for(lambda: owner.stats.jobs == 4 and eng.entered.is_set(), "callers queued")
    eng.gate.set()
    runner.join(JOIN_S)
    results, errors = box["r"]
    assert not results and len(errors) == 4
    for exc in errors.values():
        assert isinstance(exc, LLMUnavailable)
        assert "crashed: EngineDeadError: EngineCore encountered an issue" in str(exc)
    calls = len(eng.calls)
    with pytest.raises(LLMUnavailable, match="crashed earlier .*restart the process"):
        owner.generate([req("later")])
    assert len(eng.calls) == calls  # refused without touching the engine


def test_engine_thread_death_fails_the_running_callers() -> None:
    class Escape(BaseException):
        pass

    owner = own(Raising(Escape("thread killer")), "dying", timeout_s=JOIN_S)
    with pytest.raises(LLMUnavailable, match="crashed: Escape: thread killer"):
        owner.generate([req("c")])
    with pytest.raises(LLMUnavailable, match="crashed earlier"):
        owner.generate([req("d")])


def test_close_fails_queued_callers_and_closes_the_engine() -> None:
    eng = Gated()
    owner = own(eng, "gated", timeout_s=JOIN_S)
    holder = threading.Thread(target=lambda: owner.generate([req("hold")]), daemon=True)
    holder.start()
    assert eng.entered.wait(JOIN_S)
    box: dict[str, Any] = {}
    fns = [lambda i=i: owner.generate([req(f"q{i}")]) for i in range(3)]
    runner = threading.Thread(target=lambda: box.update(r=in_threads(fns)), daemon=True)
    runner.start()
    wait_for(lambda: owner.stats.jobs == 4, "3 queued callers")
    owner.close(join_s=0.1)
    runner.join(JOIN_S)
    results, errors = box["r"]
    assert not results and all("was closed" in str(e) for e in errors.values())
    assert eng.closed
    eng.gate.set()
    with pytest.raises(LLMUnavailable, match="is closed"):
        owner.generate([req("after")])


def test_other_engine_methods_run_on_the_engine_thread() -> None:
    eng = Gated(hold_first=False)
    owner = own(eng, "gated", timeout_s=JOIN_S)
    assert owner.reset_prefix_cache() is True
    assert owner.inside == 0  # plain attributes read through
    assert eng.threads == {"genre-engine-gated"}
    assert getattr(owner, "no_such_method", None) is None


def test_get_engine_wraps_engines_that_are_not_thread_safe(monkeypatch) -> None:
    import genre_agent.llm.models

    built: list[Gated] = []

    def factory(cfg: LLMConfig, target: str) -> Gated:
        built.append(Gated(hold_first=False))
        return built[-1]

    from genre_agent.llm import registry

    monkeypatch.setitem(registry.ENGINES, "transformers", factory)
    monkeypatch.setattr(genre_agent.llm.models, "resolve_model", lambda name, progress=None: name)
    monkeypatch.setattr(registry, "_CACHE", {})
    cfg = LLMConfig(engine="transformers", model="owned-test", engine_timeout_s=7.0)
    llm = registry.get_engine(cfg)
    assert isinstance(llm, ScoringEngineOwner) and llm.inner is built[0]
    assert llm.timeout_s == 7.0 and llm.model_id == "gated"
    assert registry.get_engine(cfg) is llm  # one owner per engine
    fake = registry.get_engine(LLMConfig(engine="fake"))
    assert isinstance(fake, FakeLLM)  # declares thread_safe: passed through
    llm.close()
    assert built[0].closed


def test_recommender_threads_share_one_owned_engine(fake_rec) -> None:
    """8 threads recommend through one owner over an engine that must not be re-entered."""

    class NotReentrant(FakeLLM):
        thread_safe = False

        def __init__(self) -> None:
            super().__init__("first")
            self.inside = 0
            self.overlaps = 0
            self.sizes: list[int] = []

        def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
            self.inside += 1
            self.overlaps += self.inside > 1
            self.sizes.append(len(requests))
            time.sleep(0.02)  # widen the window an unsafe caller would race in
            try:
                return super().generate(requests)
            finally:
                self.inside -= 1

    inner = NotReentrant()
    fake_rec._llm = own(inner, "notreentrant", timeout_s=JOIN_S)
    histories = [["m1", "m3"], ["m2"], ["m14", "m44"], ["m5"]] * 2
    results, errors = in_threads(
        [lambda h=h: fake_rec.recommend(history=h, k=3) for h in histories]
    )
    assert not errors, errors
    for i, res in results.items():
        ids = [r.item.id for r in res.items]
        assert len(ids) == 3 and not set(ids) & set(histories[i])
    assert inner.overlaps == 0
    assert sum(inner.sizes) == len(inner.requests) >= 8
