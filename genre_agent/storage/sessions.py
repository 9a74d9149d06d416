"""Chat session rows in SQLite: one row per session holding its whole state as JSON."""

from __future__ import annotations

from pathlib import Path

from genre_agent.storage.migrations import migrate_sqlite
from genre_agent.storage.sqlite import SQLiteDB


class SQLiteSessions:
    """SQLite: ``sessions (id, user_id, updated, state)``; the state is opaque JSON text."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._sql = SQLiteDB(path)
        self.db = self._sql.conn
        self.lock = self._sql.lock
        with self.lock:
            migrate_sqlite(self.db, str(path), "sessions")

    def put(self, session_id: str, user_id: str | None, updated: float, state: str) -> None:
        with self.lock, self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)",
                (session_id, user_id, updated, state),
            )

    def get(self, session_id: str) -> str | None:
        with self.lock:
            row = self.db.execute(
                "SELECT state FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def delete_user(self, user_id: str) -> int:
        with self.lock, self.db:
            cur = self.db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        return cur.rowcount

    def exists(self, session_id: str) -> bool:
        with self.lock:
            row = self.db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return row is not None

    def delete(self, session_id: str) -> bool:
        with self.lock, self.db:
            cur = self.db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        return cur.rowcount > 0

    def page(
        self, user_id: str | None, offset: int, limit: int
    ) -> list[tuple[str, str | None, float]]:
        where, args = ("WHERE user_id = ?", [user_id]) if user_id is not None else ("", [])
        with self.lock:
            return list(
                self.db.execute(
                    f"SELECT id, user_id, updated FROM sessions {where}"
                    " ORDER BY updated, id LIMIT ? OFFSET ?",
                    (*args, limit, offset),
                )
            )

    def list(self) -> list[tuple[str, str | None, float]]:
        with self.lock:
            return list(
                self.db.execute("SELECT id, user_id, updated FROM sessions ORDER BY updated, id")
            )

    def close(self) -> None:
        self._sql.close()
