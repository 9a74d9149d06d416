"""A Redis Streams consumer of feedback events (``genre consume``).

One consumer in a consumer group reads batches with XREADGROUP, validates each message
into a :class:`~genre_agent.service.feedback.FeedbackEvent`, writes the batch with
``record_feedback`` (one SQLite transaction) and only then acknowledges it. Delivery is at
least once: a consumer killed between the write and the XACK gets the same entries again
on restart (it first re-reads its own pending entries, id ``0``), and the event id makes
the second write a no-op. A malformed message goes to the dead-letter stream with the
reason, its original fields and its source id, in the same MULTI/EXEC as the XACK.

A message is either the event's fields (``event_id``, ``user_id``, ``item_id``, ``type``,
and optionally ``value``, ``timestamp``; an empty value or timestamp means none), or one
field ``event`` holding the event as a JSON object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from genre_agent.config import Config, QueueConfig
from genre_agent.errors import GenreError, shorten
from genre_agent.service.feedback import FeedbackError, FeedbackEvent, parse_event, record_feedback
from genre_agent.storage.backends import store_errors
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.cache import RecommendationCache, open_cache

Fields = Mapping[bytes | str, bytes | str]
Entry = tuple[str, Fields | None]


class QueueError(GenreError):
    """Redis could not be reached or used."""


class MalformedEvent(Exception):
    """A message that cannot become a FeedbackEvent; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


def decode_fields(fields: Fields) -> dict[str, str]:
    """The message's fields as text (undecodable bytes escaped: for the dead letter)."""
    out = {}
    for k, v in fields.items():
        key = k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else k
        out[key] = v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
    return out


def parse_message(fields: Fields) -> FeedbackEvent:
    """One stream message -> a FeedbackEvent, or MalformedEvent naming what is wrong."""
    try:
        data: dict[str, Any] = {_text(k): _text(v) for k, v in fields.items()}
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"not UTF-8: {exc}") from None
    if "event" in data:
        if len(data) != 1:
            others = sorted(k for k in data if k != "event")
            raise MalformedEvent(f"field 'event' (JSON) must be the only field, also got {others}")
        try:
            obj = json.loads(data["event"])
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise MalformedEvent(f"field 'event': bad JSON: {msg}") from None
        if not isinstance(obj, dict):
            raise MalformedEvent(f"field 'event': expected a JSON object, got {type(obj).__name__}")
        data = obj
    else:
        for name in ("value", "timestamp"):
            if data.get(name) == "":
                data[name] = None
    try:
        return parse_event(data)
    except FeedbackError as exc:
        raise MalformedEvent("; ".join(exc.problems)) from None


@dataclass
class ConsumeStats:
    """Counts since the consumer started."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    # Pending entries whose message was deleted from the stream (XDEL, trimming).
    gone: int = 0
    batches: int = 0
    # Entries re-read from this consumer's pending list at start (read, never acked).
    replayed: int = 0
    # Entries claimed from other consumers that left them pending (XAUTOCLAIM).
    claimed: int = 0
    started: float = field(default_factory=time.time)

    def line(self) -> str:
        secs = max(time.time() - self.started, 1e-9)
        return (
            f"read {self.read}, stored {self.stored}, duplicates {self.duplicates}, "
            f"dead-lettered {self.dead}, replayed {self.replayed}, claimed {self.claimed}, "
            f"gone {self.gone} "
            f"in {self.batches} batches ({self.read / secs:.0f} events/s)"
        )


@dataclass(frozen=True)
class QueueStatus:
    """The consumer group as XINFO GROUPS sees it (for /metrics and the status line)."""

    stream: str
    group: str
    exists: bool
    length: int = 0
    # Entries delivered to a consumer and not acknowledged yet.
    pending: int = 0
    # Entries in the stream not yet delivered to the group (None: Redis cannot tell, e.g.
    # after entries were deleted).
    lag: int | None = None
    consumers: int = 0
    last_delivered_id: str = ""


def shown_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def connect(cfg: QueueConfig) -> redis.Redis:
    """A client for ``cfg.redis_url`` (checked with PING: a wrong URL fails here)."""
    try:
        client = redis.Redis.from_url(cfg.redis_url, socket_connect_timeout=5)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        url = shown_url(cfg.redis_url)
        raise QueueError(f"queue.redis_url = {url!r}: cannot connect: {exc}") from None
    return client


def queue_status(client: redis.Redis, cfg: QueueConfig) -> QueueStatus:
    """The group's pending count and lag (XINFO GROUPS) and the stream's length."""
    try:
        length = int(client.xlen(cfg.stream))
        groups = client.xinfo_groups(cfg.stream)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return QueueStatus(cfg.stream, cfg.group, exists=False)
        raise QueueError(f"XINFO GROUPS {cfg.stream}: {exc}") from None
    except redis.RedisError as exc:
        raise QueueError(f"queue.redis_url = {shown_url(cfg.redis_url)!r}: {exc}") from None
    for g in groups:
        if _text(g["name"]) == cfg.group:
            lag = g.get("lag")
            return QueueStatus(
                cfg.stream,
                cfg.group,
                exists=True,
                length=length,
                pending=int(g["pending"]),
                lag=None if lag is None else int(lag),
                consumers=int(g["consumers"]),
                last_delivered_id=_text(g["last-delivered-id"]),
            )
    return QueueStatus(cfg.stream, cfg.group, exists=False, length=length)


class Consumer:
    """Reads, validates, stores, acknowledges. ``run`` until ``should_stop()``."""

    def __init__(
        self,
        client: redis.Redis,
        cfg: QueueConfig,
        interactions: InteractionBackend,
        cache: RecommendationCache | None = None,
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.interactions = interactions
        # Stored events delete their users' cached answers (service.cache_url).
        self.cache = cache
        self.stats = ConsumeStats()
        # "0": re-read this consumer's pending entries first; then ">" (new entries).
        self._cursor = "0"
        # The last read of new entries came back empty after block_ms.
        self.idle = False
        self._next_claim = 0.0

    @classmethod
    def from_config(
        cls, config: Config, client: redis.Redis, interactions: InteractionBackend
    ) -> Consumer:
        """A consumer of ``config.queue`` that keeps ``service.cache_url``'s cache fresh."""
        return cls(client, config.queue, interactions, open_cache(config))

    def ensure_group(self) -> None:
        """XGROUP CREATE ... MKSTREAM, unless the group exists (it then keeps its position)."""
        try:
            self.client.xgroup_create(self.cfg.stream, self.cfg.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise QueueError(
                    f"XGROUP CREATE {self.cfg.stream} {self.cfg.group}: {exc}"
                ) from None

    def claim(self) -> int:
        """Take over entries another consumer of the group read and left unacknowledged for
        claim_idle_ms (it died), and handle them; returns how many."""
        total, start = 0, "0-0"
        while True:
            resp: Any = self.client.xautoclaim(
                self.cfg.stream,
                self.cfg.group,
                self.cfg.consumer,
                self.cfg.claim_idle_ms,
                start_id=start,
                count=self.cfg.batch,
            )
            start = _text(resp[0])
            entries: list[Entry] = [(_text(eid), fields) for eid, fields in resp[1]]
            if entries:
                self.handle(entries)
                total += len(entries)
            if start == "0-0":
                break
        self.stats.claimed += total
        return total

    def step(self) -> int:
        """Read and handle one batch; returns how many entries it had (0: none came
        within block_ms, or the pending list is now empty)."""
        replay = self._cursor == "0"
        if not replay and self.cfg.claim_idle_ms and time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.cfg.claim_idle_ms / 1000
            claimed = self.claim()
            if claimed:
                self.idle = False
                return claimed
        resp: Any = self.client.xreadgroup(
            self.cfg.group,
            self.cfg.consumer,
            {self.cfg.stream: self._cursor},
            count=self.cfg.batch,
            block=None if replay else self.cfg.block_ms,
        )
        entries: list[Entry] = []
        for _stream, rows in resp or []:
            entries.extend((_text(eid), fields) for eid, fields in rows)
        self.idle = not entries and not replay
        if not entries:
            if replay:
                self._cursor = ">"
            return 0
        if replay:
            self.stats.replayed += len(entries)
        self.handle(entries)
        return len(entries)

    def handle(self, entries: list[Entry]) -> None:
        """Store the valid events (committed), then dead-letter the malformed ones and
        acknowledge every entry in one MULTI/EXEC."""
        events: list[FeedbackEvent] = []
        dead: list[tuple[str, Fields, str]] = []
        gone = 0
        for eid, fields in entries:
            if not fields:  # deleted from the stream while pending: nothing to store
                gone += 1
                continue
            try:
                events.append(parse_message(fields))
            except MalformedEvent as exc:
                dead.append((eid, fields, exc.reason))
        result = record_feedback(self.interactions, events, self.cache)
        pipe = self.client.pipeline(transaction=True)
        for eid, fields, reason in dead:
            pipe.xadd(
                self.cfg.dead_letter,
                {
                    "source_id": eid,
                    "source_stream": self.cfg.stream,
                    "reason": shorten(reason, 2000),
                    "fields": json.dumps(decode_fields(fields), ensure_ascii=False),
                    "consumer": self.cfg.consumer,
                    "time": f"{time.time():.3f}",
                },
            )
        pipe.xack(self.cfg.stream, self.cfg.group, *[eid for eid, _ in entries])
        pipe.execute()
        s = self.stats
        s.read += len(entries)
        s.stored += result.stored
        s.duplicates += len(result.duplicates)
        s.dead += len(dead)
        s.gone += gone
        s.batches += 1

    def run(
        self,
        should_stop: Callable[[], bool],
        on_batch: Callable[[ConsumeStats], None] | None = None,
        until_idle: bool = False,
    ) -> ConsumeStats:
        """Consume until ``should_stop()`` (checked between batches, so a stop request
        finishes the batch in hand and waits at most block_ms for a read), or with
        ``until_idle`` until a read of new entries finds none."""
        try:
            self.ensure_group()
            while not should_stop():
                self.step()
                if on_batch is not None:
                    on_batch(self.stats)
                if until_idle and self.idle:
                    break
        except redis.RedisError as exc:
            raise QueueError(
                f"queue {self.cfg.stream!r} at {shown_url(self.cfg.redis_url)}: {exc} "
                "(entries read but not acknowledged are re-read on the next start)"
            ) from None
        except store_errors() as exc:
            raise QueueError(
                f"interactions store {self.interactions.describe()}: {exc} (the batch was not "
                "acknowledged; it is re-read on the next start)"
            ) from None
        return self.stats
