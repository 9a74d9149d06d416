"""Wall-clock deadlines for LLM calls, and an HTTP transport that keeps them on every read.

``llm_deadline(seconds)`` bounds every LLM call made inside it, on this thread and on the
threads ``faults.iter_in_threads`` starts for it: a call that would end later raises
``LLMTimeout`` by the deadline instead. Deadlines nest; the earliest wins. Each engine call
also has its own limit (``llm.request_timeout_s`` for the openai engine,
``llm.engine_timeout_s`` for in-process engines); the effective deadline is the earlier one.

Why a transport: an HTTP client's read timeout restarts at every byte, so a server that
answers 200 and then trickles one byte every few seconds is never timed out. ``DeadlineBackend``
gives each socket read and write only the time left before the calling thread's deadline.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "genre_llm_deadline", default=None
)


@contextmanager
def llm_deadline(seconds: float | None) -> Iterator[float | None]:
    """LLM calls inside finish (or raise LLMTimeout) within ``seconds`` from now.

    ``None`` adds no limit. Yields the effective deadline (``time.monotonic()`` based).
    """
    if seconds is None:
        yield _DEADLINE.get()
        return
    with deadline_at(time.monotonic() + max(seconds, 0.0)) as at:
        yield at


@contextmanager
def deadline_at(at: float | None) -> Iterator[float | None]:
    """``llm_deadline`` with an absolute ``time.monotonic()`` deadline (None: no limit)."""
    current = _DEADLINE.get()
    effective = at if current is None else (current if at is None else min(current, at))
    token = _DEADLINE.set(effective)
    try:
        yield effective
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The deadline LLM calls on this thread must meet, or None."""
    return _DEADLINE.get()


def time_left(limit_s: float) -> float:
    """Seconds a call may take: ``limit_s``, or less when the deadline is nearer."""
    at = _DEADLINE.get()
    if at is None:
        return limit_s
    return min(limit_s, at - time.monotonic())


# -- the openai client's HTTP transport (httpx2 / httpcore2, as openai >= 3 uses) -------------


def _bounded(timeout: float | None, what: str) -> float | None:
    """``timeout`` cut to the time left before the deadline; raises when none is left."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        import httpcore2

        kinds: dict[str, type[Exception]] = {
            "connect": httpcore2.ConnectTimeout,
            "read": httpcore2.ReadTimeout,
            "write": httpcore2.WriteTimeout,
        }
        raise kinds[what](f"the call's wall-clock deadline passed before this {what}")
    return left if timeout is None else min(timeout, left)


class DeadlineStream:
    """A network stream whose reads and writes end by the calling thread's deadline."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = self.inner.read(max_bytes, _bounded(timeout, "read"))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _bounded(timeout, "write"))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> DeadlineStream:
        tls = self.inner.start_tls(ssl_context, server_hostname, _bounded(timeout, "read"))
        return DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class DeadlineBackend:
    """httpcore2's sync network backend with ``DeadlineStream`` streams."""

    def __init__(self, inner: Any = None) -> None:
        if inner is None:
            from httpcore2 import SyncBackend

            inner = SyncBackend()
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> DeadlineStream:
        stream = self.inner.connect_tcp(
            host, port, _bounded(timeout, "connect"), local_address, socket_options
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> DeadlineStream:
        stream = self.inner.connect_unix_socket(path, _bounded(timeout, "connect"), socket_options)
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def deadline_transport(max_connections: int = 100) -> Any:
    """An ``httpx2`` transport whose socket I/O keeps ``llm_deadline`` (for the openai client).

    httpx2 builds its connection pool without a network-backend argument, so the backend
    is set on the pool it built; a check fails loudly if a new httpx2 moves it.
    """
    import httpx2

    transport = httpx2.HTTPTransport(
        limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=20)
    )
    pool: Any = getattr(transport, "_pool", None)
    if pool is None or not hasattr(pool, "_network_backend"):
        from genre_agent.errors import ModelError

        raise ModelError(
            "this httpx2 version hides its connection pool's network backend: the openai "
            "engine cannot bound a call's wall-clock time (genre_agent/llm/deadline.py)"
        )
    pool._network_backend = DeadlineBackend(pool._network_backend)
    return transport
