"""Chat session state: the picks and turns a session records, its active wishes, and the
store that keeps one row per session (moved from genre_agent.service.chat, which re-exports
every name)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from genre_agent.config import Config
from genre_agent.errors import GenreError
from genre_agent.service.intent import Intent, build_where
from genre_agent.storage.base import SessionBackend
from genre_agent.storage.sessions import SQLiteSessions


class Pick(BaseModel):
    id: str
    title: str
    rationale: str | None = None
    year: int | None = None
    genres: str = ""


class Turn(BaseModel):
    n: int
    message: str
    intent: Intent | None = None
    where: dict[str, Any] | None = None
    picks: list[Pick] = Field(default_factory=list)
    violations: list[dict[str, Any]] = Field(default_factory=list)
    intent_prompt_sha256: str = ""
    intent_template_sha256: str = ""
    rank_prompt_sha256: str = ""
    model_id: str = ""
    # Wishes dropped because nothing matched them all (the used filter is ``where``).
    relaxed: list[str] = Field(default_factory=list)
    # Who read the message: "normaliser", "llm", "normaliser+llm" (hybrid) or "query".
    read_by: str = ""
    # The normaliser's reading (its wishes, the catalog ids of named titles, the words it
    # could not account for), when it ran.
    reading: dict[str, Any] | None = None
    seconds: float = 0.0
    error: str | None = None
    # Set when the LLM ran out of the turn's budget ("llm_timeout") or failed
    # ("llm_unavailable") and the turn answered without it; ``notes`` say what was skipped.
    fallback: str | None = None
    notes: list[str] = Field(default_factory=list)


class SessionState(BaseModel):
    """Everything a session needs to resume: active wishes, seeds, rejections, what was shown."""

    id: str
    user_id: str | None = None
    created: float = 0.0
    query: str = ""
    year_min: int | None = None
    year_max: int | None = None
    genres_include: list[str] = Field(default_factory=list)
    genres_exclude: list[str] = Field(default_factory=list)
    # Titles the user named ("like Alien"): retrieval seeds, never picks; their genres are
    # an any-of filter (``genres_any``).
    references: list[str] = Field(default_factory=list)
    genres_any: list[str] = Field(default_factory=list)
    seeds: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)
    shown: list[str] = Field(default_factory=list)
    last_picks: list[Pick] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)

    def where(self) -> dict[str, Any] | None:
        return build_where(
            self.year_min, self.year_max, self.genres_include, self.genres_exclude, self.genres_any
        )

    def active_text(self) -> str:
        parts = []
        if self.query:
            parts.append(f"query: {self.query}")
        if self.year_min is not None:
            parts.append(f"year from {self.year_min}")
        if self.year_max is not None:
            parts.append(f"year up to {self.year_max}")
        if self.genres_include:
            parts.append("genres: " + ", ".join(self.genres_include))
        if self.genres_exclude:
            parts.append("not: " + ", ".join(self.genres_exclude))
        return "; ".join(parts)

    def apply(
        self,
        intent: Intent,
        references: Sequence[str] = (),
        reference_genres: Sequence[str] = (),
    ) -> None:
        """Merge one turn's intent (and the titles it names) into the active search."""
        last = [p.id for p in self.last_picks]
        if intent.reset:
            self.query, self.year_min, self.year_max = "", None, None
            self.genres_include, self.genres_exclude, self.seeds = [], [], []
            self.references, self.genres_any = [], []
        if intent.query.strip():
            self.query = intent.query.strip()
        if intent.year_min is not None:
            self.year_min = intent.year_min
            if self.year_max is not None and self.year_max < intent.year_min:
                self.year_max = None  # "newer ones" moves past the old bound
        if intent.year_max is not None:
            self.year_max = intent.year_max
            if self.year_min is not None and self.year_min > intent.year_max:
                self.year_min = None
        if references:
            # A newly named title replaces the earlier ones ("now something like Heat").
            self.seeds = [s for s in self.seeds if s not in self.references]
            self.references = list(dict.fromkeys(references))
            self.genres_any = list(dict.fromkeys(reference_genres))
            self.seeds += [r for r in self.references if r not in self.seeds]
        if intent.genres_include:
            self.genres_include = list(intent.genres_include)
            self.genres_exclude = [g for g in self.genres_exclude if g not in intent.genres_include]
        for g in intent.genres_exclude:
            if g not in self.genres_exclude:
                self.genres_exclude.append(g)
            if g in self.genres_include:
                self.genres_include.remove(g)
        for pos in intent.more_like:
            iid = last[pos - 1]
            if iid not in self.seeds:
                self.seeds.append(iid)
        for pos in intent.exclude_picks:
            iid = last[pos - 1]
            if iid not in self.rejected:
                self.rejected.append(iid)
            if iid in self.seeds:
                self.seeds.remove(iid)


class SessionStore:
    """Chat sessions: one row per session holding its whole state (small; rewritten per
    turn), in SQLite (a path) or any SessionBackend (``from_config``: PostgreSQL when
    ``store.database_url`` is set)."""

    def __init__(self, rows: str | Path | SessionBackend) -> None:
        self.rows: SessionBackend = SQLiteSessions(rows) if isinstance(rows, (str, Path)) else rows

    @classmethod
    def from_config(cls, config: Config) -> SessionStore:
        from genre_agent.storage.backends import open_sessions

        return cls(open_sessions(config))

    def save(self, state: SessionState) -> None:
        self.rows.put(state.id, state.user_id, time.time(), state.model_dump_json())

    def load(self, session_id: str) -> SessionState:
        raw = self.rows.get(session_id)
        if raw is None:
            raise GenreError(f"no chat session {session_id!r}")
        return SessionState.model_validate_json(raw)

    def delete_user(self, user_id: str) -> int:
        """Delete every session of ``user_id``; returns how many."""
        return self.rows.delete_user(user_id)

    def exists(self, session_id: str) -> bool:
        return self.rows.exists(session_id)

    def delete(self, session_id: str) -> bool:
        return self.rows.delete(session_id)

    def page(
        self, user_id: str | None, offset: int, limit: int
    ) -> list[tuple[str, str | None, float]]:
        """(id, user_id, updated) of ``limit`` sessions from ``offset``, least recently
        updated first; only ``user_id``'s when given."""
        return self.rows.page(user_id, offset, limit)

    def list(self) -> list[tuple[str, str | None, float]]:
        return self.rows.list()

    def close(self) -> None:
        self.rows.close()
