"""The per-user recommendation cache: a small Protocol and its stores (off, memory, Redis).

Entries are grouped by user, so one call deletes all of a user's entries (their feedback
changed their history). Within a user, ``key`` names what the answer depends on (the
models' versions, the config, the request's filters); genre_agent.service.cached builds
it. Values are opaque text (a serialised answer).

``RedisCache`` keeps each user's entries in one hash, ``<prefix><user_id>``, whose fields
are the keys; the hash expires ``ttl_s`` after its last write. A refit makes the old
fields unreachable (the key changes) and they go with the hash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit, urlunsplit

from genre_agent.config import Config
from genre_agent.errors import StoreError

if TYPE_CHECKING:
    import redis

PREFIX = "genre:rec:"


class RecommendationCache(Protocol):
    """What the recommend path needs from a cache."""

    enabled: bool

    def get(self, user_id: str, key: str) -> str | None: ...

    def put(self, user_id: str, key: str, value: str) -> None: ...

    def invalidate_user(self, user_id: str) -> None: ...

    def clear(self) -> None: ...


class NoCache:
    """The cache off (``service.cache_url`` unset): nothing is kept."""

    enabled = False

    def get(self, user_id: str, key: str) -> str | None:
        return None

    def put(self, user_id: str, key: str, value: str) -> None:
        return None

    def invalidate_user(self, user_id: str) -> None:
        return None

    def clear(self) -> None:
        return None


class MemoryCache:
    """One process's dict (tests, and a single-process service); entries expire after
    ``ttl_s``. ``clock`` is injectable for tests."""

    enabled = True

    def __init__(self, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._now = clock
        self._users: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self.gets = self.puts = 0

    def get(self, user_id: str, key: str) -> str | None:
        with self._lock:
            self.gets += 1
            found = self._users.get(user_id)
            if found is None or found[0] <= self._now():
                return None
            return found[1].get(key)

    def put(self, user_id: str, key: str, value: str) -> None:
        with self._lock:
            self.puts += 1
            found = self._users.get(user_id)
            entries = found[1] if found is not None and found[0] > self._now() else {}
            entries[key] = value
            self._users[user_id] = (self._now() + self.ttl_s, entries)

    def invalidate_user(self, user_id: str) -> None:
        with self._lock:
            self._users.pop(user_id, None)

    def clear(self) -> None:
        with self._lock:
            self._users.clear()

    def users(self) -> list[str]:
        with self._lock:
            return sorted(self._users)


class CacheError(StoreError):
    """The cache's Redis could not be reached or used (the HTTP service answers 503)."""


def shown(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class RedisCache:
    """Entries in Redis (redis-py), shared by every worker and replica. A Redis error is a
    CacheError naming the URL: a request fails rather than skip the cache silently (an
    entry a failed delete left behind would be served)."""

    enabled = True

    def __init__(
        self, client: redis.Redis, ttl_s: int, prefix: str = PREFIX, url: str = "redis"
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.url = shown(url)

    @classmethod
    def from_url(cls, url: str, ttl_s: int, prefix: str = PREFIX) -> RedisCache:
        import redis

        # Short timeouts: a cache that does not answer must not hold a request for long.
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, ttl_s, prefix, url)

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        import redis

        try:
            yield
        except redis.RedisError as exc:
            raise CacheError(f"recommendation cache at {self.url}: {what} failed: {exc}") from exc

    def _name(self, user_id: str) -> str:
        return self.prefix + user_id

    def get(self, user_id: str, key: str) -> str | None:
        with self._calls("read"):
            raw = self.client.hget(self._name(user_id), key)
        return None if raw is None else bytes(raw).decode("utf-8")  # type: ignore[arg-type]

    def put(self, user_id: str, key: str, value: str) -> None:
        with self._calls("write"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self._name(user_id), key, value.encode("utf-8"))
            pipe.expire(self._name(user_id), self.ttl_s)
            pipe.execute()

    def invalidate_user(self, user_id: str) -> None:
        with self._calls("delete"):
            self.client.delete(self._name(user_id))

    def clear(self) -> None:
        with self._calls("clear"):
            names = list(self.client.scan_iter(match=self.prefix + "*", count=500))
            for start in range(0, len(names), 500):
                self.client.delete(*names[start : start + 500])


def open_cache(cfg: Config) -> RecommendationCache:
    """The cache ``service.cache_url`` names (Redis), or the no-op cache."""
    url = cfg.service.cache_url
    if url is None:
        return NoCache()
    return RedisCache.from_url(url, cfg.service.cache_ttl_s)
