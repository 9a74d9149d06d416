"""One thread owns an engine that is not thread-safe; concurrent callers queue for it.

vLLM's offline ``LLM`` and the transformers engine must not be entered by two threads at
once (vLLM's engine-core input thread crashed with ``msgspec.ValidationError`` and every
caller hung). ``EngineOwner`` serialises them through one engine thread that batches:
each round it takes every request waiting in the queue, makes one ``generate`` call (and
one ``score_labels`` call) for all of them, and hands each caller its slice.

Failures never hang a caller:
- a caller waits at most ``timeout_s`` (queue time included), or until its
  ``llm_deadline`` when that is sooner, then gets ``LLMTimeout``; a job that has not
  started by then is dropped from the queue (one already in the engine runs to its end on
  the engine thread, the only thread there is);
- an error in a batched call is retried per caller, so one bad request fails only its
  caller; every caller whose own call raised gets the error (a GenreError);
- a fatal error (vLLM's ``EngineDeadError``, or the engine thread dying) fails every
  waiting caller, and later calls fail at once;
- while one engine call has run longer than ``timeout_s``, new calls fail at once
  instead of queueing behind it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM, Generation, GenRequest, LabelScorer, LabelScores, ScoreRequest
from genre_agent.llm.deadline import time_left
from genre_agent.llm.faults import LLMTimeout, LLMUnavailable, one_line

# Exception class names that mean the engine cannot answer again (matched by name so that
# this module does not import vLLM).
FATAL_ERRORS = frozenset({"EngineDeadError"})


def _is_fatal(exc: BaseException) -> bool:
    return any(cls.__name__ in FATAL_ERRORS for cls in type(exc).__mro__)


@dataclass(eq=False)
class _Job:
    kind: str  # "generate" | "score" | "call"
    requests: list[Any]
    fn: Callable[[Any], Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


@dataclass
class OwnerStats:
    """What the engine thread did: engine calls made, requests and jobs they carried."""

    batches: int = 0  # engine calls (generate or score_labels)
    requests: int = 0  # requests carried by those calls
    jobs: int = 0  # caller calls served (a job carries one caller's requests)
    largest_batch: int = 0  # most requests in one engine call
    timeouts: int = 0
    errors: int = 0


class EngineOwner:
    """Serialises and batches calls to ``inner`` on one daemon thread (see module doc)."""

    thread_safe = True

    def __init__(self, inner: LLM, name: str, timeout_s: float, max_batch: int = 256) -> None:
        self.inner = inner
        self.name = name
        self.model_id = inner.model_id
        self.revision = inner.revision
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.stats = OwnerStats()
        self._jobs: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._dead: str | None = None
        self._closed = False
        self._busy_since: float | None = None
        self._running: list[_Job] = []
        self._thread = threading.Thread(target=self._main, name=f"genre-engine-{name}", daemon=True)
        self._thread.start()

    # -- callers -----------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        return list(self._submit(_Job("generate", list(requests))))

    def run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(inner)`` on the engine thread, between batches (e.g. reset_prefix_cache)."""
        return self._submit(_Job("call", [], fn=fn))

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes EngineOwner lacks: read the engine's, and run its
        # methods on the engine thread so they never race a batch.
        if name.startswith("_") or name in {"inner", "score_labels"}:
            raise AttributeError(name)
        value = getattr(self.inner, name)
        if not callable(value):
            return value

        def on_engine_thread(*args: Any, **kwargs: Any) -> Any:
            return self.run(lambda eng: getattr(eng, name)(*args, **kwargs))

        return on_engine_thread

    def _unusable(self) -> LLMUnavailable | None:
        head = f"engine {self.name!r} ({self.model_id})"
        if self._closed:
            return LLMUnavailable(f"{head} is closed")
        if self._dead is not None:
            return LLMUnavailable(f"{head} crashed earlier ({self._dead}); restart the process")
        if self._busy_since is not None:
            busy = time.monotonic() - self._busy_since
            if busy > self.timeout_s:
                return LLMUnavailable(
                    f"{head} is stuck: one call has not returned for {busy:.0f} s "
                    f"(llm.engine_timeout_s={self.timeout_s:g}); restart the process"
                )
        return None

    def _submit(self, job: _Job) -> Any:
        if job.kind != "call" and not job.requests:
            return []
        # The caller's llm_deadline (a request's budget), when nearer than engine_timeout_s.
        limit = time_left(self.timeout_s)
        if limit <= 0:
            raise LLMTimeout(
                f"engine {self.name!r} ({self.model_id}): not queued, the call's deadline "
                "had passed (service.llm_budget_s or an llm_deadline)"
            )
        with self._cv:
            problem = self._unusable()
            if problem is not None:
                raise problem
            waiting = sum(len(j.requests) for j in self._jobs)
            self._jobs.append(job)
            self.stats.jobs += 1
            self._cv.notify()
        deadline = time.monotonic() + limit
        try:
            # Short slices: a Ctrl-C in the main thread is handled between them.
            while not job.done.wait(min(0.5, max(deadline - time.monotonic(), 0.0))):
                if time.monotonic() >= deadline:
                    break
        except BaseException:
            self._cancel(job)
            raise
        if not job.done.is_set():
            self._cancel(job)
            if not job.done.is_set():
                with self._cv:
                    self.stats.timeouts += 1
                which = (
                    f"{self.timeout_s:g} s (llm.engine_timeout_s"
                    if limit >= self.timeout_s
                    else f"the {limit:.3g} s left of the call's deadline ("
                )
                raise LLMTimeout(
                    f"engine {self.name!r} ({self.model_id}): no answer within {which}; "
                    f"{waiting} request(s) were queued ahead)"
                )
        if job.error is not None:
            raise job.error
        return job.result

    def _cancel(self, job: _Job) -> None:
        with self._cv:
            job.cancelled = True
            if job in self._jobs:
                self._jobs.remove(job)

    # -- engine thread -----------------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        """Every waiting job (up to max_batch requests), or None once closed."""
        with self._cv:
            while not self._jobs and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            taken: list[_Job] = []
            n = 0
            while self._jobs:
                job = self._jobs[0]
                if taken and n + len(job.requests) > self.max_batch:
                    break
                self._jobs.popleft()
                taken.append(job)
                n += len(job.requests)
            self._busy_since = time.monotonic()
            self._running = taken
            return taken

    def _main(self) -> None:
        try:
            while (jobs := self._take()) is not None:
                try:
                    for job in (j for j in jobs if j.kind == "call"):
                        self._run_call(job)
                    for kind in ("generate", "score"):
                        group = [j for j in jobs if j.kind == kind]
                        if group:
                            self._run_batch(kind, group)
                finally:
                    with self._cv:
                        self._busy_since = None
        except BaseException as exc:  # noqa: BLE001  (the thread must not die silently)
            self._die(exc, self._running)

    def _run_call(self, job: _Job) -> None:
        assert job.fn is not None
        try:
            job.finish(job.fn(self.inner))
        except Exception as exc:
            if _is_fatal(exc):
                self._die(exc, [job])
            else:
                job.finish(error=self._as_error(exc))

    def _engine_call(self, kind: str, requests: list[Any]) -> list[Any]:
        out: list[Any]
        if kind == "generate":
            out = list(self.inner.generate(requests))
        else:
            if not isinstance(self.inner, LabelScorer):
                raise LLMUnavailable(f"engine {self.name!r} cannot score labels")
            out = list(self.inner.score_labels(requests))
        if len(out) != len(requests):
            raise LLMUnavailable(
                f"engine {self.name!r} returned {len(out)} answers for {len(requests)} requests"
            )
        with self._cv:
            self.stats.batches += 1
            self.stats.requests += len(requests)
            self.stats.largest_batch = max(self.stats.largest_batch, len(requests))
        return out

    def _run_batch(self, kind: str, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if not j.cancelled]
        if not jobs:
            return
        requests = [r for j in jobs for r in j.requests]
        try:
            out = self._engine_call(kind, requests)
        except Exception as exc:
            if _is_fatal(exc):
                self._die(exc, jobs)
            elif len(jobs) == 1:
                with self._cv:
                    self.stats.errors += 1
                jobs[0].finish(error=self._as_error(exc))
            else:
                # One caller's bad request must not fail the others: retry each alone.
                for job in jobs:
                    if self._dead is None:
                        self._run_batch(kind, [job])
                    elif not job.done.is_set():
                        job.finish(error=self._crashed(exc))
            return
        start = 0
        for job in jobs:
            job.finish(out[start : start + len(job.requests)])
            start += len(job.requests)

    def _as_error(self, exc: Exception) -> GenreError:
        if isinstance(exc, GenreError):
            return exc
        err = LLMUnavailable(
            f"engine {self.name!r} ({self.model_id}) failed: {type(exc).__name__}: "
            f"{one_line(exc, 200)}"
        )
        err.__cause__ = exc
        return err

    def _die(self, exc: BaseException, running: list[_Job]) -> None:
        with self._cv:
            self._dead = f"{type(exc).__name__}: {one_line(exc, 200)}"
            pending = list(self._jobs)
            self._jobs.clear()
            self.stats.errors += 1
        for job in [*running, *pending]:
            if not job.done.is_set():
                job.finish(error=self._crashed(exc))

    def _crashed(self, exc: BaseException) -> LLMUnavailable:
        err = LLMUnavailable(
            f"engine {self.name!r} ({self.model_id}) crashed: {self._dead}; restart the process"
        )
        err.__cause__ = exc
        return err

    # -- lifecycle ---------------------------------------------------------------------
    def close(self, join_s: float = 2.0) -> None:
        """Fail queued callers, stop the engine thread, then close the engine."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            pending = list(self._jobs)
            self._jobs.clear()
            self._cv.notify_all()
        for job in pending:
            job.finish(error=LLMUnavailable(f"engine {self.name!r} was closed"))
        # A call stuck in the engine is not waited for: closing the engine is what ends it.
        self._thread.join(timeout=join_s)
        self.inner.close()


class ScoringEngineOwner(EngineOwner):
    """An EngineOwner whose engine also scores labels (scoring mode)."""

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        return list(self._submit(_Job("score", list(requests))))


def own(inner: LLM, name: str, timeout_s: float, max_batch: int = 256) -> EngineOwner:
    """Wrap ``inner`` in the owner that matches its capabilities."""
    cls = ScoringEngineOwner if isinstance(inner, LabelScorer) else EngineOwner
    return cls(inner, name, timeout_s, max_batch)
