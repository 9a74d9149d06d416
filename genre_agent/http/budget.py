"""The LLM stage under a time budget: the ranked list always, rationales while time lasts.

``budgeted_stream`` runs ``Recommender.recommend_stream`` on a worker thread and passes its
events on until ``service.llm_budget_s`` is spent. The first event is always "ranked" and
the last always "done": the stream's own, or, when the budget ran out or the engine failed,
the ranked list with the rationales that finished, ``trace.fallback`` naming why
("llm_timeout", "llm_unavailable", "llm_invalid") and ``trace.missing_rationales`` listing
the items left unexplained. If the failure came before the ranked list (an LLM ranker),
the list is the one the non-LLM fallback gives. An LLM failure is never an error answer,
and never an unflagged one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from genre_agent.errors import GenreError, RankingValidationError
from genre_agent.llm.deadline import deadline_at
from genre_agent.llm.faults import LLMTimeout, LLMUnavailable, one_line
from genre_agent.types import RankedItem, Recommendation, StreamEvent, Trace

LLM_TIMEOUT = "llm_timeout"
LLM_UNAVAILABLE = "llm_unavailable"
LLM_INVALID = "llm_invalid"


def failure_reason(exc: BaseException) -> str | None:
    """The fallback reason for an LLM failure, or None when ``exc`` is not one."""
    if isinstance(exc, LLMTimeout):
        return LLM_TIMEOUT
    if isinstance(exc, LLMUnavailable):
        return LLM_UNAVAILABLE
    if isinstance(exc, RankingValidationError):
        return LLM_INVALID
    return None


def flag(rec: Recommendation, reason: str, wanted: int, why: str) -> Recommendation:
    """``rec`` marked as a fallback: the reason, a note, and the top ``wanted`` items that
    have no rationale."""
    trace = rec.trace.model_copy(deep=True)
    if trace.fallback is None:
        trace.fallback = reason
    else:  # a ranker's own fallback (e.g. "unstable") stays; this one is noted
        trace.notes.append(f"also fell back: {reason}")
    trace.missing_rationales = [it.item.id for it in rec.items[:wanted] if not it.rationale]
    trace.notes.append(why)
    return rec.model_copy(update={"trace": trace})


def _merged(
    ranked: Recommendation, trace: Trace, explained: dict[int, RankedItem]
) -> Recommendation:
    items = [explained.get(it.rank, it) for it in ranked.items]
    return ranked.model_copy(update={"items": items, "trace": trace})


def budgeted_stream(
    stream: Callable[[], Iterator[StreamEvent]],
    fallback: Callable[[], Recommendation],
    budget_s: float,
    wanted: int,
) -> Iterator[StreamEvent]:
    """The events of ``stream()`` within ``budget_s`` seconds, always ending with "done".

    ``fallback()`` gives the non-LLM ranking when the failure came before the ranked list;
    ``wanted`` is how many top items should have had a rationale. An error that is not an
    LLM failure (a bad request) raises as it would without a budget.
    """
    events: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
    stop = threading.Event()
    deadline = time.monotonic() + budget_s

    def work() -> None:
        ranked: Recommendation | None = None
        try:
            # Every LLM call of the stream ends by the budget's deadline too (the generator
            # runs in this context), so this thread and the engine calls it waits for end
            # with the request instead of outliving it.
            with deadline_at(deadline):
                for ev in stream():
                    if ev.kind == "ranked":
                        ranked = ev.recommendation
                    # Copies taken here, while the generator is suspended: the stream
                    # mutates the ranked list's trace as rationales arrive.
                    snapshot = ranked.trace.model_copy(deep=True) if ranked is not None else None
                    events.put(("event", ev.model_copy(deep=True), snapshot))
                    if stop.is_set():
                        return
        except BaseException as exc:  # noqa: BLE001  (handed to the caller)
            events.put(("error", exc, None))
        finally:
            events.put(("end", None, None))

    threading.Thread(target=work, name="genre-http-llm", daemon=True).start()
    ranked: Recommendation | None = None
    trace: Trace | None = None
    explained: dict[int, RankedItem] = {}
    reason, why = LLM_TIMEOUT, ""
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise queue.Empty
                kind, value, snapshot = events.get(timeout=left)
            except queue.Empty:
                why = f"the LLM stage passed service.llm_budget_s = {budget_s:g} s"
                break
            if kind == "end":  # the stream ended without "done": treat it as a failure
                reason, why = LLM_UNAVAILABLE, "the LLM stage ended without a result"
                break
            if kind == "error":
                found = failure_reason(value)
                if found is None and ranked is None:
                    raise value  # a bad request, or a bug: not an LLM failure
                reason = found or LLM_UNAVAILABLE
                why = f"LLM failure: {type(value).__name__}: {one_line(value, 240)}"
                break
            ev: StreamEvent = value
            trace = snapshot
            if ev.kind == "ranked":
                ranked = ev.recommendation
            elif ev.kind == "rationale" and ev.item is not None:
                explained[ev.item.rank] = ev.item
            yield ev
            if ev.kind == "done":
                return
    finally:
        stop.set()
    if ranked is not None and trace is not None:
        final = flag(_merged(ranked, trace, explained), reason, wanted, why)
    else:
        final = flag(fallback(), reason, wanted, why + "; the list is the non-LLM ranking")
        # A stream always starts with the list.
        yield StreamEvent(kind="ranked", recommendation=final)
    yield StreamEvent(kind="done", recommendation=final)


def budgeted_call(
    call: Callable[[], Recommendation],
    fallback: Callable[[], Recommendation],
    budget_s: float,
    wanted: int,
) -> Recommendation:
    """``call()`` within ``budget_s`` seconds; past it, or on an LLM failure, ``fallback()``
    flagged (for calls that give no partial result, such as ``rank``)."""
    done: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    deadline = time.monotonic() + budget_s

    def work() -> None:
        try:
            with deadline_at(deadline):  # the call's LLM requests end with the budget too
                done.put((True, call()))
        except BaseException as exc:  # noqa: BLE001  (handed to the caller)
            done.put((False, exc))

    threading.Thread(target=work, name="genre-http-llm", daemon=True).start()
    try:
        ok, value = done.get(timeout=budget_s)
    except queue.Empty:
        why = f"the LLM stage passed service.llm_budget_s = {budget_s:g} s"
        return flag(fallback(), LLM_TIMEOUT, wanted, why + "; the list is the non-LLM ranking")
    if ok:
        result: Recommendation = value
        return result
    reason = failure_reason(value)
    if reason is None or not isinstance(value, GenreError):
        raise value
    why = f"LLM failure: {type(value).__name__}: {one_line(value, 240)}"
    return flag(fallback(), reason, wanted, why + "; the list is the non-LLM ranking")
