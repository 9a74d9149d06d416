"""Every LLM call ends by a wall-clock deadline, however the server trickles, and leaves no
thread behind: the openai engine, the in-process engine's owner, the CLI, a chat turn and a
recommendation over HTTP, against a server that answers 200 and then one byte at a time
(tests/trickle_server.py)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_http import make_service
from trickle_server import trickle_server

from genre_agent.config import LLMConfig
from genre_agent.http import create_app
from genre_agent.llm import FakeLLM
from genre_agent.llm.base import Generation, GenRequest, Message, ScoreRequest
from genre_agent.llm.deadline import llm_deadline
from genre_agent.llm.engines import OpenAIEngine
from genre_agent.llm.faults import LLMTimeout
from genre_agent.llm.owner import own

ROOT = Path(__file__).resolve().parents[1]
REQ = GenRequest(messages=(Message("user", "hello"),), max_tokens=8)
SREQ = ScoreRequest(messages=(Message("user", "x"),), labels=("A", "B"))
# A deadline is a bound, not a speed: the slack only absorbs a loaded machine. Without the
# wall-clock deadline each of these calls would never end (the server never finishes).
SLACK_S = 15.0


def openai_llm(url: str, timeout_s: float = 60.0) -> OpenAIEngine:
    return OpenAIEngine(LLMConfig(engine="openai", base_url=url, request_timeout_s=timeout_s), "m")


def bounded(fn: Callable[[], Any], within_s: float) -> tuple[Any, BaseException | None, float]:
    """``fn()`` on a thread; fails the test if it is still running after ``within_s``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            box["error"] = exc

    t0 = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(within_s)
    assert not worker.is_alive(), f"still running after {within_s} s"
    return box.get("value"), box.get("error"), time.monotonic() - t0


def settled_threads(baseline: int, within_s: float = 10.0) -> int:
    """The thread count once it is back to ``baseline`` (or what it is after ``within_s``)."""
    stop = time.monotonic() + within_s
    while threading.active_count() > baseline and time.monotonic() < stop:
        time.sleep(0.1)
    return threading.active_count()


# -- the openai engine -------------------------------------------------------------------------


def test_a_trickling_server_times_out_at_request_timeout() -> None:
    with trickle_server(0.5) as srv:
        _, error, took = bounded(lambda: openai_llm(srv.url, 2.0).generate([REQ]), 2.0 + SLACK_S)
        trickled = srv.stats()["bytes_trickled"]
    assert isinstance(error, LLMTimeout), error
    assert "no answer within 2 s (llm.request_timeout_s)" in str(error)
    assert took >= 2.0
    assert trickled >= 1  # bytes kept coming: a per-read timeout alone would not fire


@pytest.mark.parametrize("call", ["generate", "score_labels"])
def test_a_deadline_nearer_than_request_timeout_wins(call: str) -> None:
    with trickle_server(0.5) as srv:
        engine = openai_llm(srv.url, 60.0)

        def run() -> Any:
            with llm_deadline(1.0):
                if call == "generate":
                    return engine.generate([REQ, REQ, REQ])
                return engine.score_labels([SREQ, SREQ])

        _, error, _ = bounded(run, 1.0 + SLACK_S)
    assert isinstance(error, LLMTimeout), error
    assert "left of the call's deadline" in str(error) and "\n" not in str(error)


def test_a_call_past_its_deadline_is_not_sent() -> None:
    with trickle_server(0.5) as srv:
        engine = openai_llm(srv.url)
        with llm_deadline(0.0), pytest.raises(LLMTimeout, match="not sent"):
            engine.generate([REQ])
        assert srv.stats()["requests"] == 0


def test_timed_out_calls_leave_no_thread_behind() -> None:
    with trickle_server(0.5) as srv:
        engine = openai_llm(srv.url)
        baseline = threading.active_count()

        def ten() -> None:
            for _ in range(10):
                with llm_deadline(0.3), pytest.raises(LLMTimeout):
                    engine.generate([REQ] * 4)  # four worker threads each time

        _, error, _ = bounded(ten, 3.0 + SLACK_S)
        assert error is None, error
        after = settled_threads(baseline)
        assert 10 <= srv.stats()["requests"] <= 40  # a call past its deadline is not sent
        stop = time.monotonic() + 10
        while srv.stats()["open"] > 1 and time.monotonic() < stop:  # 1: this stats request
            time.sleep(0.2)
        assert srv.stats()["open"] == 1  # and every timed-out connection was closed
    assert after <= baseline, [t.name for t in threading.enumerate()]


# -- the in-process engines' owner thread ----------------------------------------------------------


class Slow:
    """An in-process engine (not thread-safe, so owned) that takes ``delay`` s per call."""

    def __init__(self, delay: float) -> None:
        self.inner, self.delay = FakeLLM("first"), delay
        self.model_id, self.revision = "slow", "0"

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        time.sleep(self.delay)
        return self.inner.generate(requests)

    def close(self) -> None:
        return None


def test_the_owner_keeps_the_callers_deadline() -> None:
    owner = own(Slow(1.5), "slow", timeout_s=300.0)
    try:

        def run() -> Any:
            with llm_deadline(0.5):
                return owner.generate([REQ])

        _, error, _ = bounded(run, 0.5 + SLACK_S)
        assert isinstance(error, LLMTimeout), error
        assert "left of the call's deadline" in str(error)
        with llm_deadline(0.0), pytest.raises(LLMTimeout, match="not queued"):
            owner.generate([REQ])
        assert [g.text for g in owner.generate([REQ])]  # no deadline: waits for the answer
    finally:
        owner.close()


# -- the CLI and the HTTP service against the trickling server -------------------------------


def test_cli_recommend_ends_by_its_deadline(recommend_cmd: list[str]) -> None:
    cmd = recommend_cmd
    with trickle_server(1.0) as srv:
        t0 = time.monotonic()
        proc = subprocess.run(
            [*cmd, "--set", "llm.engine=openai", "--set", f"llm.base_url={srv.url}"]
            + ["--set", "llm.request_timeout_s=2"],
            capture_output=True,
            text=True,
            timeout=120,  # without a wall-clock deadline: forever
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        took = time.monotonic() - t0
        assert srv.stats()["requests"] >= 1
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert (
        last == f"error: engine 'openai' at {srv.url}: no answer within 2 s (llm.request_timeout_s)"
    )
    assert "Recommendations" in proc.stdout  # the ranked list came before the rationales
    assert took < 60, took


BUDGET_S = 1.0


def _trickling_service(tmp_path: Path, url: str, budget_s: float = BUDGET_S) -> Any:
    return make_service(tmp_path, llm=openai_llm(url, 60.0), service={"llm_budget_s": budget_s})


def test_http_recommend_and_chat_answer_flagged_within_the_budget(tmp_path: Path) -> None:
    with (
        trickle_server(0.5) as srv,
        TestClient(create_app(service=_trickling_service(tmp_path, srv.url))) as c,
    ):
        got, error, took = bounded(
            lambda: c.get("/v1/recommend/big", params={"k": 3, "explain": "true"}),
            BUDGET_S + SLACK_S,
        )
        assert error is None and got.status_code == 200, error or got.text
        tr = got.json()["trace"]
        assert tr["fallback"] == "llm_timeout" and len(tr["missing_rationales"]) == 3, tr
        assert took >= BUDGET_S

        sid = c.post("/v1/sessions", json={}).json()["id"]
        got, error, took = bounded(
            lambda: c.post(f"/v1/sessions/{sid}/messages", json={"message": "a funny film"}),
            BUDGET_S + SLACK_S,
        )
        assert error is None and got.status_code == 200, error or got.text
        turn = got.json()
        assert turn["fallback"] == "llm_timeout" and turn["error"] is None, turn
        # The default reader (chat.intent = "normaliser") needs no LLM; the LLM stage of the
        # picks ran out of the budget and the turn answered without it, flagged.
        assert turn["read_by"] == "normaliser" and turn["picks"], turn
        assert turn["intent"]["genres_include"] == ["Comedy"], turn
        assert all(p["rationale"] is None for p in turn["picks"])
        assert any(n.startswith("picks ranked without the LLM") for n in turn["notes"])


def test_http_timed_out_requests_leave_no_thread_behind(tmp_path: Path) -> None:
    with (
        trickle_server(0.5) as srv,
        # A 1 s budget: each round waits out two budgets, and a leak shows in any round.
        TestClient(create_app(service=_trickling_service(tmp_path, srv.url, 1.0))) as c,
    ):
        sid = c.post("/v1/sessions", json={}).json()["id"]

        def both() -> None:
            rec = c.get("/v1/recommend/big", params={"k": 3, "explain": "true"}).json()
            turn = c.post(f"/v1/sessions/{sid}/messages", json={"message": "a comedy"}).json()
            assert rec["trace"]["fallback"] == turn["fallback"] == "llm_timeout"

        both()  # warm up the server's worker threads
        baseline = settled_threads(threading.active_count())
        for _ in range(4):
            both()
        after = settled_threads(baseline)
        assert srv.stats()["requests"] >= 5 * 4
    assert after <= baseline, [t.name for t in threading.enumerate()]
