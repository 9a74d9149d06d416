"""The one SQLite helper: every store (interactions, profiles, sessions, caches) opens here."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class SQLiteDB:
    """A connection shared by threads, serialised by one lock, with the schema applied.

    ``path`` may be ``":memory:"``. Parent folders are created. Writes go through
    :meth:`tx`, a transaction that commits on success and rolls back on any error.
    """

    def __init__(self, path: str | Path, schema: Sequence[str] = ()) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: callers share the connection; self.lock serialises it.
        self.conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
        self.lock = threading.RLock()
        # Deleted rows are overwritten with zeros, not left in free pages (forget-user).
        self.conn.execute("PRAGMA secure_delete=ON")
        with self.tx() as conn:
            for stmt in schema:
                conn.execute(stmt)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self.lock, self.conn:
            yield self.conn

    def checkpoint(self) -> bool:
        """Copy a WAL's pages into the database file and empty the WAL (a no-op when the
        journal is not WAL); False when a reader in another process kept part of it."""
        with self.lock:
            row = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return row is None or int(row[0]) == 0

    def close(self) -> None:
        with self.lock:
            self.conn.close()
