"""The user-data stores on PostgreSQL through psycopg 3 (the `postgres` extra).

Same behaviour as the SQLite stores (storage/base.py's protocols; one test suite runs on
both). Each process keeps a small pool of connections per URL, so concurrent requests of a
worker do not queue on one connection; every worker and replica shares the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from genre_agent.errors import StoreError
from genre_agent.storage.interactions import FeedbackRow, Interaction
from genre_agent.storage.migrations import Component, migrate_postgres
from genre_agent.storage.profiles import ProfileRecord

# Idle connections kept per URL and process; more are opened under load and closed after.
POOL_IDLE = 8


class PostgresError(StoreError):
    """PostgreSQL could not be reached or used (psycopg missing, server down, bad URL);
    the HTTP service answers 503, as for any store that cannot serve."""


def shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise PostgresError(
            "store.database_url names PostgreSQL but psycopg is not installed: "
            "pip install 'genre-agent[postgres]'"
        ) from None
    return psycopg


class Pool:
    """Connections to one database for this process (autocommit; writers open explicit
    transactions). Each store component's schema is checked once per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._migrated: set[str] = set()

    def _open(self) -> Any:
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise PostgresError(f"cannot connect to {shown_url(self.url)}: {exc}") from None

    @contextmanager
    def connection(self) -> Iterator[Any]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._open()
        psycopg = _psycopg()
        try:
            yield conn
        except psycopg.OperationalError as exc:  # the server went away, or refused
            raise PostgresError(f"{shown_url(self.url)}: {exc}") from exc
        finally:
            # Back to the pool only when idle and healthy (a server restart breaks it).
            healthy = not (conn.closed or conn.broken)
            if healthy and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                with self._lock:
                    if len(self._idle) < POOL_IDLE:
                        self._idle.append(conn)
                        conn = None
            if conn is not None:
                conn.close()

    def ensure(self, component: Component, allow_offline: bool = False) -> list[int]:
        """Migrate ``component``'s tables (once per process); returns the versions applied."""
        if component in self._migrated and not allow_offline:
            return []
        with self.connection() as conn:
            done = migrate_postgres(conn, shown_url(self.url), component, None, allow_offline)
        self._migrated.add(component)
        return done

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


_POOLS: dict[tuple[int, str], Pool] = {}
_POOLS_LOCK = threading.Lock()


def pool(url: str) -> Pool:
    """This process's pool for ``url`` (keyed by PID too: a forked worker opens its own)."""
    key = (os.getpid(), url)
    with _POOLS_LOCK:
        found = _POOLS.get(key)
        if found is None:
            found = _POOLS[key] = Pool(url)
        return found


class _Store:
    component: Component

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = pool(url)
        self.pool.ensure(self.component)

    def describe(self) -> str:
        return shown_url(self.url)

    def close(self) -> None:
        """Nothing to do: connections belong to the process's pool, shared by stores."""


class PostgresInteractions(_Store):
    """InteractionBackend on PostgreSQL. version() reads three write counters (store_meta),
    bumped inside each writing transaction, so they change in commit order."""

    component: Component = "interactions"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._counts: dict[str, int] | None = None
        self._counts_version: tuple[int, int, int] = (-1, -1, -1)
        self._counts_lock = threading.Lock()

    @staticmethod
    def _bump(conn: Any, key: str) -> int:
        row = conn.execute(
            "UPDATE store_meta SET n = n + 1 WHERE key = %s RETURNING n", (key,)
        ).fetchone()
        return int(row[0])

    def add(self, rows: Iterable[Interaction]) -> int:
        data = [(r.user_id, r.item_id, r.timestamp, r.rating) for r in rows]
        if not data:
            return 0
        with self.pool.connection() as conn, conn.transaction():
            self._bump(conn, "interactions")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO interactions VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (user_id, item_id)"
                    " DO UPDATE SET ts = excluded.ts, rating = excluded.rating",
                    data,
                )
        return len(data)

    def add_events(self, rows: Iterable[FeedbackRow]) -> list[str]:
        """Store events in one transaction, committed before returning; return the ids not
        stored because that id was stored (or forgotten) before."""
        rows = list(rows)
        duplicates: list[str] = []
        if not rows:
            return duplicates
        now = time.time()
        with self.pool.connection() as conn, conn.transaction():
            batch = self._bump(conn, "feedback")
            for r in rows:
                cur = conn.execute(
                    "INSERT INTO feedback (event_id, user_id, item_id, type, value, ts, rating,"
                    " recorded, batch, request_id) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"
                    " WHERE NOT EXISTS (SELECT 1 FROM feedback_forgotten WHERE event_id = %s)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (
                        r.event_id,
                        r.user_id,
                        r.item_id,
                        r.type,
                        r.value,
                        r.timestamp,
                        r.rating,
                        now,
                        batch,
                        r.request_id,
                        r.event_id,
                    ),
                )
                if cur.rowcount != 1:
                    duplicates.append(r.event_id)
        return duplicates

    def event_counts(self, event_ids: Iterable[str]) -> dict[str, int]:
        ids = list(event_ids)
        with self.pool.connection() as conn:
            found = dict(
                conn.execute(
                    "SELECT event_id, COUNT(*) FROM feedback WHERE event_id = ANY(%s)"
                    " GROUP BY event_id",
                    (ids,),
                ).fetchall()
            )
        return {eid: int(found.get(eid, 0)) for eid in ids}

    def event_count(self) -> int:
        with self.pool.connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def delete_user(self, user_id: str) -> tuple[int, int]:
        with self.pool.connection() as conn, conn.transaction():
            self._bump(conn, "deletes")
            conn.execute(
                "INSERT INTO feedback_forgotten SELECT event_id FROM feedback"
                " WHERE user_id = %s ON CONFLICT DO NOTHING",
                (user_id,),
            )
            n_rows = conn.execute("DELETE FROM interactions WHERE user_id = %s", (user_id,))
            n_events = conn.execute("DELETE FROM feedback WHERE user_id = %s", (user_id,))
            return n_rows.rowcount, n_events.rowcount

    def user_count(self, user_id: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM interactions WHERE user_id = %s)"
                " + (SELECT COUNT(*) FROM feedback WHERE user_id = %s)",
                (user_id, user_id),
            ).fetchone()
        return int(row[0])

    def user_event_count(self, user_id: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM feedback WHERE user_id = %s", (user_id,)
            ).fetchone()
        return int(row[0])

    def interactions_page(
        self, user_id: str, offset: int, limit: int
    ) -> list[tuple[str, float, float | None, str]]:
        """As InteractionStore.interactions_page (the same order)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT item_id, ts, rating, 'file' AS origin FROM interactions"
                " WHERE user_id = %s UNION ALL SELECT item_id, ts, rating, 'feedback'"
                " FROM feedback WHERE user_id = %s ORDER BY 2, 1, 4, 3 LIMIT %s OFFSET %s",
                (user_id, user_id, limit, offset),
            ).fetchall()
        return [(str(a), float(b), c, str(d)) for a, b, c, d in rows]

    def feedback_page(
        self, user_id: str, after: int, limit: int
    ) -> list[tuple[int, FeedbackRow, float]]:
        """As InteractionStore.feedback_page, ``after`` a position in store order (seq)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT seq, event_id, user_id, item_id, type, value, ts, rating, request_id,"
                " recorded FROM feedback WHERE user_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (user_id, after, limit),
            ).fetchall()
        return [
            (int(r[0]), FeedbackRow(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]), r[9])
            for r in rows
        ]

    def version(self) -> tuple[int, int, int]:
        with self.pool.connection() as conn:
            got = dict(conn.execute("SELECT key, n FROM store_meta").fetchall())
        return int(got["interactions"]), int(got["feedback"]), int(got["deletes"])

    def history(self, user_id: str) -> list[Interaction]:
        """As InteractionStore.history: ties at one timestamp in arrival order, never by id."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT user_id, item_id, ts, rating FROM ("
                " SELECT user_id, item_id, ts, rating, 0 AS src, seq FROM interactions"
                " WHERE user_id = %s"
                " UNION ALL SELECT user_id, item_id, ts, rating, 1, seq FROM feedback"
                " WHERE user_id = %s) AS rows ORDER BY ts, src, seq",
                (user_id, user_id),
            ).fetchall()
        return [Interaction(*row) for row in rows]

    def item_counts(self) -> dict[str, int]:
        """Interactions per item (each feedback event counts); new events only are counted
        when only events were added since the last call."""
        with self._counts_lock:
            version = self.version()
            old = self._counts_version
            with self.pool.connection() as conn:
                if self._counts is None or version[0] != old[0] or version[2] != old[2]:
                    rows = conn.execute(
                        "SELECT item_id, COUNT(*) FROM (SELECT item_id FROM interactions"
                        " UNION ALL SELECT item_id FROM feedback WHERE batch <= %s) AS t"
                        " GROUP BY item_id",
                        (version[1],),
                    ).fetchall()
                    self._counts = {item: int(n) for item, n in rows}
                elif version[1] != old[1]:
                    counts = self._counts
                    for item, n in conn.execute(
                        "SELECT item_id, COUNT(*) FROM feedback WHERE batch > %s AND batch <= %s"
                        " GROUP BY item_id",
                        (old[1], version[1]),
                    ):
                        counts[item] = counts.get(item, 0) + int(n)
            self._counts_version = version
            return dict(self._counts)

    def all(self) -> list[Interaction]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT user_id, item_id, ts, rating FROM all_interactions"
                " ORDER BY user_id, ts, item_id, rating NULLS FIRST"
            ).fetchall()
        return [Interaction(*row) for row in rows]

    def count(self) -> int:
        with self.pool.connection() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM all_interactions").fetchone()[0])

    def fingerprint(self) -> str:
        """SHA-256 of every stored interaction in canonical order; equal to the SQLite
        store's for the same rows."""
        digest = hashlib.sha256()
        for row in self.all():
            digest.update(
                json.dumps([row.user_id, row.item_id, row.timestamp, row.rating]).encode()
            )
        return digest.hexdigest()

    def users(self) -> Iterator[str]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT DISTINCT user_id FROM all_interactions ORDER BY 1")
            users = [u for (u,) in rows.fetchall()]
        yield from users


class PostgresProfiles(_Store):
    """ProfileBackend on PostgreSQL."""

    component: Component = "profiles"

    def get(self, user_id: str) -> ProfileRecord | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT record FROM profiles WHERE user_id = %s", (user_id,)
            ).fetchone()
        return ProfileRecord.model_validate_json(row[0]) if row else None

    def put(self, record: ProfileRecord) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO profiles VALUES (%s, %s)"
                " ON CONFLICT (user_id) DO UPDATE SET record = excluded.record",
                (record.user_id, record.model_dump_json()),
            )

    def delete(self, user_id: str) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM profiles WHERE user_id = %s", (user_id,))
        return cur.rowcount > 0

    def forget(self, user_id: str, item_id: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO forgotten VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, item_id),
            )

    def drop_forgotten(self, user_id: str) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM forgotten WHERE user_id = %s", (user_id,))
        return int(cur.rowcount)

    def forgotten(self, user_id: str) -> set[str]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT item_id FROM forgotten WHERE user_id = %s", (user_id,)
            ).fetchall()
        return {r[0] for r in rows}


class PostgresSessions(_Store):
    """SessionBackend on PostgreSQL."""

    component: Component = "sessions"

    def put(self, session_id: str, user_id: str | None, updated: float, state: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO sessions VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE"
                " SET user_id = excluded.user_id, updated = excluded.updated,"
                " state = excluded.state",
                (session_id, user_id, updated, state),
            )

    def get(self, session_id: str) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT state FROM sessions WHERE id = %s", (session_id,)).fetchone()
        return None if row is None else str(row[0])

    def delete_user(self, user_id: str) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM sessions WHERE user_id = %s", (user_id,))
        return int(cur.rowcount)

    def exists(self, session_id: str) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT 1 FROM sessions WHERE id = %s", (session_id,)).fetchone()
        return row is not None

    def delete(self, session_id: str) -> bool:
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM sessions WHERE id = %s", (session_id,))
        return int(cur.rowcount) > 0

    def page(
        self, user_id: str | None, offset: int, limit: int
    ) -> list[tuple[str, str | None, float]]:
        where, args = ("WHERE user_id = %s", [user_id]) if user_id is not None else ("", [])
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT id, user_id, updated FROM sessions {where}"
                " ORDER BY updated, id LIMIT %s OFFSET %s",
                (*args, limit, offset),
            ).fetchall()
        return [(str(i), u, float(t)) for i, u, t in rows]

    def list(self) -> list[tuple[str, str | None, float]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, user_id, updated FROM sessions ORDER BY updated, id"
            ).fetchall()
        return [(str(i), u, float(t)) for i, u, t in rows]
