"""Prometheus metrics of one app (its own registry, so several apps can live in a process)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from genre_agent.config import QueueConfig
from genre_agent.types import Recommendation

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

# Seconds: the fast path is tens of milliseconds, an explained request seconds to a minute.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "genre_http_request_seconds",
            "Request latency by endpoint (route template), method and status.",
            ["endpoint", "method", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "genre_llm_tokens",
            "LLM tokens spent by served requests (from each result's trace).",
            ["kind"],
            registry=self.registry,
        )
        self.llm_calls = Counter(
            "genre_llm_calls", "LLM requests made by served requests.", registry=self.registry
        )
        self.fallbacks = Counter(
            "genre_fallbacks",
            "Served results flagged with a fallback, by reason (trace.fallback).",
            ["reason"],
            registry=self.registry,
        )
        self.missing = Counter(
            "genre_missing_rationales",
            "Rationales asked for but not delivered (trace.missing_rationales).",
            registry=self.registry,
        )
        self.ready = Gauge(
            "genre_ready", "1 once stores and models are loaded.", registry=self.registry
        )

    def watch_queue(self, cfg: QueueConfig) -> None:
        """Report the feedback queue's lag at each scrape (service.queue_metrics)."""
        self.registry.register(QueueCollector(cfg))

    def observe_result(self, rec: Recommendation) -> None:
        tr = rec.trace
        self.tokens.labels("prompt").inc(tr.prompt_tokens)
        self.tokens.labels("completion").inc(tr.completion_tokens)
        self.llm_calls.inc(tr.llm_calls)
        if tr.fallback:
            self.fallbacks.labels(tr.fallback).inc()
        self.missing.inc(len(tr.missing_rationales))

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


class QueueCollector(Collector):
    """The feedback queue's consumer group, read from Redis when /metrics is scraped
    (``genre_agent.queue.queue_status``; a short timeout, so a missing Redis costs little).
    ``genre_queue_up`` is 0 when Redis did not answer, and the other gauges are absent."""

    def __init__(self, cfg: QueueConfig) -> None:
        self.cfg = cfg
        self._client: Any = None

    def describe(self) -> list[Any]:
        return []  # no Redis call when the collector is registered

    def collect(self) -> Any:
        import redis

        from genre_agent.errors import GenreError
        from genre_agent.queue import queue_status

        up = GaugeMetricFamily("genre_queue_up", "1 if the feedback queue's Redis answered.")
        try:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.cfg.redis_url, socket_connect_timeout=0.25, socket_timeout=0.5
                )
            status = queue_status(self._client, self.cfg)
        except (GenreError, redis.RedisError, ValueError, OSError):
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        if not status.exists:
            return
        labels = ["stream", "group"]
        values = [status.stream, status.group]
        for name, doc, value in (
            ("genre_queue_lag", "Stream entries not yet delivered to the group.", status.lag),
            ("genre_queue_pending", "Entries delivered and not acknowledged.", status.pending),
            ("genre_queue_length", "Entries in the stream.", status.length),
        ):
            if value is not None:
                gauge = GaugeMetricFamily(name, doc, labels=labels)
                gauge.add_metric(values, value)
                yield gauge


class MetricsMiddleware:
    """Times every request until its last body byte (a stream: until it ends)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(endpoint, scope["method"], str(status["code"])).observe(
                time.perf_counter() - t0
            )
