"""Stored user profiles (one current record per user) and the items users asked to forget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.storage.migrations import migrate_sqlite
from genre_agent.storage.sqlite import SQLiteDB


class Topic(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(min_length=1, max_length=40)
    evidence: list[str] = Field(default_factory=list, max_length=10)


class UserProfile(BaseModel):
    """What the LLM writes: liked / disliked topics with evidence ids, and a summary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    liked: list[Topic] = Field(default_factory=list, max_length=20)
    disliked: list[Topic] = Field(default_factory=list, max_length=20)
    summary: str = Field("", max_length=2000)

    def evidence_ids(self) -> set[str]:
        return {i for t in [*self.liked, *self.disliked] for i in t.evidence}

    def as_text(self) -> str:
        """Plain text for the retrieval query and the rerank prompt."""
        parts = []
        if self.liked:
            parts.append("Likes: " + "; ".join(t.topic for t in self.liked) + ".")
        if self.disliked:
            parts.append("Dislikes: " + "; ".join(t.topic for t in self.disliked) + ".")
        if self.summary:
            parts.append(self.summary)
        return " ".join(parts)


class ProfileRecord(BaseModel):
    """A stored profile with its provenance."""

    user_id: str
    profile: UserProfile
    template_sha256: str
    model_id: str
    history_sha256: str
    violations: list[dict[str, Any]] = Field(default_factory=list)
    edited: bool = False
    created: float = 0.0
    raw_output: str = ""


class ProfileStore:
    """SQLite: one current profile per user, and the items each user asked to forget."""

    def __init__(self, path: str | Path) -> None:
        self._sql = SQLiteDB(path)
        self.db = self._sql.conn
        self.lock = self._sql.lock
        with self.lock:
            migrate_sqlite(self.db, str(path), "profiles")

    def get(self, user_id: str) -> ProfileRecord | None:
        with self.lock:
            row = self.db.execute(
                "SELECT record FROM profiles WHERE user_id = ?", (user_id,)
            ).fetchone()
        return ProfileRecord.model_validate_json(row[0]) if row else None

    def put(self, record: ProfileRecord) -> None:
        with self.lock, self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO profiles VALUES (?, ?)",
                (record.user_id, record.model_dump_json()),
            )

    def delete(self, user_id: str) -> bool:
        with self.lock, self.db:
            cur = self.db.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,))
        return cur.rowcount > 0

    def forget(self, user_id: str, item_id: str) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT OR IGNORE INTO forgotten VALUES (?, ?)", (user_id, item_id))

    def drop_forgotten(self, user_id: str) -> int:
        """Delete the list of items ``user_id`` asked to forget (forgetting the whole user)."""
        with self.lock, self.db:
            cur = self.db.execute("DELETE FROM forgotten WHERE user_id = ?", (user_id,))
        return cur.rowcount

    def forgotten(self, user_id: str) -> set[str]:
        with self.lock:
            rows = self.db.execute(
                "SELECT item_id FROM forgotten WHERE user_id = ?", (user_id,)
            ).fetchall()
        return {r[0] for r in rows}

    def close(self) -> None:
        self.db.close()
