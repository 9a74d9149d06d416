"""LLM failures as one-line GenreErrors, and an interruptible parallel map for HTTP engines."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from genre_agent.errors import ModelError

T = TypeVar("T")
R = TypeVar("R")


class LLMUnavailable(ModelError):
    """The LLM engine or server gave no answer (refused, timed out, HTTP error, crashed).

    The message is one line naming the engine, where it runs and the cause.
    """


class LLMTimeout(LLMUnavailable):
    """No answer within the configured time."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` with whitespace runs collapsed to one space, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


def openai_error(
    exc: Exception, where: str, timeout_s: float, limit_s: float | None = None
) -> LLMUnavailable:
    """Map an ``openai`` client exception to one LLMUnavailable line; ``where`` is the URL.

    ``limit_s`` is the call's wall-clock limit when a deadline (a request's budget) made it
    shorter than ``timeout_s`` (llm.request_timeout_s).
    """
    import openai

    head = f"engine 'openai' at {where}"
    if isinstance(exc, openai.APITimeoutError):
        if limit_s is not None and limit_s < timeout_s:
            return LLMTimeout(
                f"{head}: no answer within the {limit_s:.3g} s left of the call's deadline"
            )
        return LLMTimeout(f"{head}: no answer within {timeout_s:g} s (llm.request_timeout_s)")
    if isinstance(exc, openai.APIConnectionError):
        root = _root_cause(exc)
        cause = one_line(root) if root is not exc else "connection error"
        if isinstance(root, ConnectionRefusedError) or "refused" in cause.lower():
            cause = f"connection refused ({cause})"
        return LLMUnavailable(f"{head}: cannot connect: {cause}")
    if isinstance(exc, openai.APIStatusError):
        reason = getattr(exc.response, "reason_phrase", "") or ""
        body = exc.body
        if isinstance(body, dict):
            body = body.get("message") or body.get("detail") or body
        detail = one_line(body or exc.message, 200)
        return LLMUnavailable(f"{head}: HTTP {exc.status_code} {reason}: {detail}".rstrip(": "))
    return LLMUnavailable(f"{head}: {type(exc).__name__}: {one_line(exc, 200)}")


def map_in_threads(
    fn: Callable[[T], R], items: Sequence[T], workers: int, name: str = "genre-llm"
) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``workers`` daemon threads; the first error raises.

    Unlike ``ThreadPoolExecutor``, a Ctrl-C (or SIGTERM unwinding as SystemExit) returns
    at once: the caller waits in short slices, and the workers are daemon threads, so
    interpreter shutdown does not wait for a request that may never be answered.
    """
    out: list[Any] = [None] * len(items)
    for i, value in iter_in_threads(fn, items, workers, name):
        out[i] = value
    return out


def iter_in_threads(
    fn: Callable[[T], R], items: Sequence[T], workers: int, name: str = "genre-llm"
) -> Iterator[tuple[int, R]]:
    """``(index, fn(item))`` pairs in the order they finish, computed on daemon threads
    (see ``map_in_threads``); the first error raises."""
    if not items:
        return
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(items)):
        todo.put(i)
    finished: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()
    # Each call runs in a copy of the caller's context, so it keeps the caller's
    # llm_deadline (genre_agent.llm.deadline).
    context = contextvars.copy_context()

    def work() -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                finished.put((i, context.copy().run(fn, items[i]), None))
            except BaseException as exc:  # noqa: BLE001  (handed to the caller)
                finished.put((i, None, exc))

    for n in range(min(workers, len(items))):
        threading.Thread(target=work, name=f"{name}-{n}", daemon=True).start()
    try:
        for _ in range(len(items)):
            while True:
                try:
                    i, value, error = finished.get(timeout=0.2)
                    break
                except queue.Empty:
                    continue
            if error is not None:
                raise error
            yield i, value
    finally:
        stop.set()
