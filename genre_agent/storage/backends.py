"""The factory for user-data stores: SQLite files by default, PostgreSQL when
``store.database_url`` is set. Callers get a storage/base.py protocol, never a class."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from genre_agent.config import Config
from genre_agent.storage.base import (
    ExposureBackend,
    InteractionBackend,
    ProfileBackend,
    SessionBackend,
)
from genre_agent.storage.migrations import Component

BackendKind = Literal["sqlite", "postgres"]


def backend_kind(config: Config) -> BackendKind:
    return "postgres" if config.store.database_url else "sqlite"


def _sqlite_interactions(config: Config) -> InteractionBackend:
    from genre_agent.storage.interactions import InteractionStore

    memory = config.store.kind == "memory"
    return InteractionStore(":memory:" if memory else config.store.interactions_path)


def _sqlite_profiles(config: Config) -> ProfileBackend:
    from genre_agent.storage.profiles import ProfileStore

    return ProfileStore(config.profile.path)


def _sqlite_sessions(config: Config) -> SessionBackend:
    from genre_agent.storage.sessions import SQLiteSessions

    return SQLiteSessions(config.chat.sessions_path)


def _pg_interactions(config: Config) -> InteractionBackend:
    from genre_agent.storage.postgres import PostgresInteractions

    return PostgresInteractions(str(config.store.database_url))


def _pg_profiles(config: Config) -> ProfileBackend:
    from genre_agent.storage.postgres import PostgresProfiles

    return PostgresProfiles(str(config.store.database_url))


def _pg_sessions(config: Config) -> SessionBackend:
    from genre_agent.storage.postgres import PostgresSessions

    return PostgresSessions(str(config.store.database_url))


class _Backend:
    def __init__(
        self,
        interactions: Callable[[Config], InteractionBackend],
        profiles: Callable[[Config], ProfileBackend],
        sessions: Callable[[Config], SessionBackend],
    ) -> None:
        self.interactions = interactions
        self.profiles = profiles
        self.sessions = sessions


BACKENDS: dict[BackendKind, _Backend] = {
    "sqlite": _Backend(_sqlite_interactions, _sqlite_profiles, _sqlite_sessions),
    "postgres": _Backend(_pg_interactions, _pg_profiles, _pg_sessions),
}


def _sqlite_path(config: Config, component: Component) -> Path:
    return {
        "interactions": Path(config.store.interactions_path),
        "profiles": Path(config.profile.path),
        "sessions": Path(config.chat.sessions_path),
    }[component]


def exists(config: Config, component: Component) -> bool:
    """Whether the store holds anything yet (a SQLite file that is missing is not created
    by a reader); a database is always there."""
    if backend_kind(config) == "postgres":
        return True
    return _sqlite_path(config, component).exists()


def open_interactions(config: Config) -> InteractionBackend:
    return BACKENDS[backend_kind(config)].interactions(config)


def open_profiles(config: Config) -> ProfileBackend:
    return BACKENDS[backend_kind(config)].profiles(config)


def open_sessions(config: Config) -> SessionBackend:
    return BACKENDS[backend_kind(config)].sessions(config)


def open_exposures(config: Config, interactions: InteractionBackend) -> ExposureBackend:
    """The exposures of online experiments, in ``interactions``' database (SQLite: its
    connection, so an in-memory store has them too)."""
    if backend_kind(config) == "postgres":
        from genre_agent.storage.postgres_exposures import PostgresExposures

        return PostgresExposures(str(config.store.database_url))
    from genre_agent.storage.exposures import SQLiteExposures
    from genre_agent.storage.interactions import InteractionStore

    if not isinstance(interactions, InteractionStore):
        raise TypeError(f"SQLite exposures need an InteractionStore, got {type(interactions)}")
    return SQLiteExposures(interactions.sqlite)


def migrate(config: Config) -> dict[str, list[int]]:
    """`genre store migrate`: bring every store to the newest schema, offline migrations
    included; returns the versions applied per store."""
    from genre_agent.storage.migrations import migrate_postgres, migrate_sqlite

    done: dict[str, list[int]] = {}
    components: tuple[Component, ...] = ("interactions", "profiles", "sessions")
    if backend_kind(config) == "postgres":
        from genre_agent.storage.postgres import pool, shown_url

        url = str(config.store.database_url)
        for comp in components:
            with pool(url).connection() as conn:
                done[comp] = migrate_postgres(conn, shown_url(url), comp, allow_offline=True)
        return done
    for comp in components:
        path = _sqlite_path(config, comp)
        if not path.exists():
            continue  # made at the newest version when first used
        conn = sqlite3.connect(str(path), timeout=30.0)
        try:
            done[comp] = migrate_sqlite(conn, str(path), comp, allow_offline=True)
        finally:
            conn.close()
    return done


def store_errors() -> tuple[type[Exception], ...]:
    """The exceptions a store raises when its database fails (for callers that turn them
    into a user-facing error)."""
    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:
        pass
    from genre_agent.storage.postgres import PostgresError

    errors.append(PostgresError)
    return tuple(errors)
