"""Versioned schemas for the user-data stores (SQLite and PostgreSQL), one list per store.

Each store ("interactions", "profiles", "sessions") records the version its tables are at in
a ``schema_version`` table (one row per store; a PostgreSQL database holds all three). On
open, pending migrations marked ``online`` are applied in one locked transaction (safe while
other workers serve); a pending offline migration, or a store newer than this code, is
refused with a message naming what to do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from genre_agent.errors import GenreError

Component = Literal["interactions", "profiles", "sessions"]
Dialect = Literal["sqlite", "postgres"]

MIGRATE_COMMAND = "genre store migrate"


class SchemaVersionError(GenreError):
    """A store's schema is older or newer than this version of genre_agent can use."""


@dataclass(frozen=True)
class Migration:
    """Statements that take a store from ``version - 1`` to ``version``.

    ``online``: safe to apply while other processes read and write (additive DDL); an
    offline migration is applied only by ``genre store migrate``.
    """

    version: int
    description: str
    statements: tuple[str, ...]
    online: bool = True


# Version 1 is the layout every store had before schema_version existed; its statements are
# all IF NOT EXISTS, so a store made before versioning is stamped version 1 unchanged.
SQLITE: dict[Component, tuple[Migration, ...]] = {
    "interactions": (
        Migration(
            1,
            "interactions, feedback events, forgotten event ids",
            (
                "CREATE TABLE IF NOT EXISTS interactions (user_id TEXT, item_id TEXT, ts REAL,"
                " rating REAL, PRIMARY KEY (user_id, item_id))",
                "CREATE TABLE IF NOT EXISTS feedback (event_id TEXT PRIMARY KEY,"
                " user_id TEXT NOT NULL, item_id TEXT NOT NULL, type TEXT NOT NULL, value REAL,"
                " ts REAL NOT NULL, rating REAL, recorded REAL NOT NULL)",
                "CREATE INDEX IF NOT EXISTS feedback_user ON feedback (user_id, ts)",
                # Ids of events deleted by forget_user: a redelivery must not bring one back.
                "CREATE TABLE IF NOT EXISTS feedback_forgotten (event_id TEXT PRIMARY KEY)",
                # Bumped by every delete, so version() changes when rows go away.
                "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, n INTEGER NOT NULL)",
                # What every reader sees: the loaded interactions (one per user and item) and
                # every feedback event (repeats of one user and item kept).
                "CREATE VIEW IF NOT EXISTS all_interactions AS"
                " SELECT user_id, item_id, ts, rating FROM interactions"
                " UNION ALL SELECT user_id, item_id, ts, rating FROM feedback",
            ),
        ),
        Migration(
            2,
            "feedback.request_id: the recommendation response an event answers",
            ("ALTER TABLE feedback ADD COLUMN request_id TEXT",),
        ),
        Migration(
            3,
            "exposures: what online experiments showed, to whom, under which variant",
            (
                "CREATE TABLE IF NOT EXISTS exposures (experiment TEXT NOT NULL,"
                " variant TEXT NOT NULL, user_id TEXT NOT NULL, request_id TEXT NOT NULL,"
                " ts REAL NOT NULL, items TEXT NOT NULL, teams TEXT,"
                " llm_tokens INTEGER NOT NULL, llm_seconds REAL NOT NULL)",
                "CREATE INDEX IF NOT EXISTS exposures_experiment ON exposures (experiment, ts)",
                "CREATE INDEX IF NOT EXISTS exposures_user ON exposures (user_id)",
            ),
        ),
    ),
    "profiles": (
        Migration(
            1,
            "profiles, forgotten items",
            (
                "CREATE TABLE IF NOT EXISTS profiles (user_id TEXT PRIMARY KEY, record TEXT)",
                "CREATE TABLE IF NOT EXISTS forgotten (user_id TEXT, item_id TEXT,"
                " PRIMARY KEY (user_id, item_id))",
            ),
        ),
    ),
    "sessions": (
        Migration(
            1,
            "chat sessions",
            (
                "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, user_id TEXT,"
                " updated REAL, state TEXT)",
            ),
        ),
    ),
}

# PostgreSQL: text compares byte-wise (COLLATE "C") as in SQLite, so both order alike.
# store_meta counts writes: each writing transaction bumps its row first, which holds the
# row lock to commit, so counter values are in commit order (a sequence's values are not).
_T = 'TEXT COLLATE "C"'
POSTGRES: dict[Component, tuple[Migration, ...]] = {
    "interactions": (
        Migration(
            1,
            "interactions, feedback events, forgotten event ids, write counters",
            (
                f"CREATE TABLE IF NOT EXISTS interactions (user_id {_T} NOT NULL,"
                f" item_id {_T} NOT NULL, ts DOUBLE PRECISION, rating DOUBLE PRECISION,"
                " PRIMARY KEY (user_id, item_id))",
                f"CREATE TABLE IF NOT EXISTS feedback (event_id {_T} PRIMARY KEY,"
                f" user_id {_T} NOT NULL, item_id {_T} NOT NULL, type TEXT NOT NULL,"
                " value DOUBLE PRECISION, ts DOUBLE PRECISION NOT NULL,"
                " rating DOUBLE PRECISION, recorded DOUBLE PRECISION NOT NULL,"
                " batch BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS feedback_user ON feedback (user_id, ts)",
                "CREATE INDEX IF NOT EXISTS feedback_batch ON feedback (batch)",
                f"CREATE TABLE IF NOT EXISTS feedback_forgotten (event_id {_T} PRIMARY KEY)",
                "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, n BIGINT NOT NULL)",
                "INSERT INTO store_meta VALUES ('interactions', 0), ('feedback', 0),"
                " ('deletes', 0) ON CONFLICT (key) DO NOTHING",
                "CREATE OR REPLACE VIEW all_interactions AS"
                " SELECT user_id, item_id, ts, rating FROM interactions"
                " UNION ALL SELECT user_id, item_id, ts, rating FROM feedback",
            ),
        ),
        Migration(
            2,
            "feedback.request_id; seq on both tables: arrival order (ties in history, paging)",
            (
                "ALTER TABLE feedback ADD COLUMN IF NOT EXISTS request_id TEXT",
                "ALTER TABLE feedback ADD COLUMN IF NOT EXISTS seq BIGSERIAL",
                "ALTER TABLE interactions ADD COLUMN IF NOT EXISTS seq BIGSERIAL",
                "CREATE INDEX IF NOT EXISTS feedback_user_seq ON feedback (user_id, seq)",
            ),
        ),
        Migration(
            3,
            "exposures: what online experiments showed, to whom, under which variant",
            (
                f"CREATE TABLE IF NOT EXISTS exposures (experiment {_T} NOT NULL,"
                f" variant {_T} NOT NULL, user_id {_T} NOT NULL, request_id {_T} NOT NULL,"
                " ts DOUBLE PRECISION NOT NULL, items TEXT NOT NULL, teams TEXT,"
                " llm_tokens BIGINT NOT NULL, llm_seconds DOUBLE PRECISION NOT NULL,"
                " seq BIGSERIAL)",
                "CREATE INDEX IF NOT EXISTS exposures_experiment ON exposures (experiment, ts)",
                "CREATE INDEX IF NOT EXISTS exposures_user ON exposures (user_id)",
            ),
        ),
    ),
    "profiles": (
        Migration(
            1,
            "profiles, forgotten items",
            (
                f"CREATE TABLE IF NOT EXISTS profiles (user_id {_T} PRIMARY KEY,"
                " record TEXT NOT NULL)",
                f"CREATE TABLE IF NOT EXISTS forgotten (user_id {_T} NOT NULL,"
                f" item_id {_T} NOT NULL, PRIMARY KEY (user_id, item_id))",
            ),
        ),
    ),
    "sessions": (
        Migration(
            1,
            "chat sessions",
            (
                f"CREATE TABLE IF NOT EXISTS sessions (id {_T} PRIMARY KEY, user_id {_T},"
                " updated DOUBLE PRECISION NOT NULL, state TEXT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id)",
            ),
        ),
    ),
}


def latest(migrations: Sequence[Migration]) -> int:
    return migrations[-1].version if migrations else 0


def plan(
    where: str,
    component: str,
    current: int,
    migrations: Sequence[Migration],
    allow_offline: bool,
) -> list[Migration]:
    """The migrations to apply to a store at ``current``; raises SchemaVersionError when the
    store is newer than this code or needs an offline migration that is not allowed."""
    newest = latest(migrations)
    if current > newest:
        raise SchemaVersionError(
            f"{where}: the {component} store is at schema version {current}, newer than this "
            f"genre_agent knows ({newest}); upgrade genre_agent (every worker) to use it"
        )
    todo = [m for m in migrations if m.version > current]
    offline = [m for m in todo if not m.online]
    if offline and not allow_offline:
        steps = "; ".join(f"v{m.version}: {m.description}" for m in offline)
        raise SchemaVersionError(
            f"{where}: the {component} store is at schema version {current}, this genre_agent "
            f"needs {newest} ({steps}); stop the workers and run `{MIGRATE_COMMAND}` with the "
            "same config first"
        )
    return todo


def migrate_sqlite(
    conn: sqlite3.Connection,
    where: str,
    component: Component,
    migrations: Sequence[Migration] | None = None,
    allow_offline: bool = False,
) -> list[int]:
    """Bring one SQLite store to the newest schema; returns the versions applied."""
    migrations = SQLITE[component] if migrations is None else migrations
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY,"
        " version INTEGER NOT NULL)"
    )
    conn.commit()
    row = conn.execute(
        "SELECT version FROM schema_version WHERE component = ?", (component,)
    ).fetchone()
    if row is not None and int(row[0]) == latest(migrations):
        return []  # the usual case: no write lock taken
    # BEGIN IMMEDIATE: one writer at a time, so two processes do not both migrate.
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
        todo = plan(where, component, int(row[0]) if row else 0, migrations, allow_offline)
        for m in todo:
            for stmt in m.statements:
                conn.execute(stmt)
        if todo:
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?) ON CONFLICT (component)"
                " DO UPDATE SET version = excluded.version",
                (component, todo[-1].version),
            )
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return [m.version for m in todo]


def migrate_postgres(
    conn: Any,
    where: str,
    component: Component,
    migrations: Sequence[Migration] | None = None,
    allow_offline: bool = False,
) -> list[int]:
    """Bring one store's tables in a PostgreSQL database to the newest schema, under an
    advisory lock (workers starting together migrate once); returns the versions applied.
    ``conn`` is a psycopg Connection in autocommit mode."""
    migrations = POSTGRES[component] if migrations is None else migrations
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('genre_agent schema'))")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY,"
            " version INTEGER NOT NULL)"
        )
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = %s", (component,)
        ).fetchone()
        todo = plan(where, component, int(row[0]) if row else 0, migrations, allow_offline)
        for m in todo:
            for stmt in m.statements:
                conn.execute(stmt)
        if todo:
            conn.execute(
                "INSERT INTO schema_version VALUES (%s, %s) ON CONFLICT (component)"
                " DO UPDATE SET version = excluded.version",
                (component, todo[-1].version),
            )
    return [m.version for m in todo]
