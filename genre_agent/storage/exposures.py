"""Exposures of online experiments in SQLite: a table in the interactions database (the
same connection as its InteractionStore, so a ":memory:" store has them too)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from genre_agent.experiments.exposures import Exposure
from genre_agent.storage.sqlite import SQLiteDB

COLUMNS = "experiment, variant, user_id, request_id, ts, items, teams, llm_tokens, llm_seconds"
FEEDBACK = "user_id, item_id, ts, type, rating, request_id"


def exposure_row(e: Exposure) -> tuple[Any, ...]:
    """The row of an exposure (items and teams as JSON lists)."""
    teams = None if e.teams is None else json.dumps(list(e.teams))
    return (
        e.experiment,
        e.variant,
        e.user_id,
        e.request_id,
        e.ts,
        json.dumps(list(e.items)),
        teams,
        e.llm_tokens,
        e.llm_seconds,
    )


def exposure_from(row: Any) -> Exposure:
    teams = None if row[6] is None else tuple(json.loads(row[6]))
    return Exposure(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        float(row[4]),
        tuple(json.loads(row[5])),
        teams,
        int(row[7]),
        float(row[8]),
    )


class SQLiteExposures:
    """ExposureBackend on the interactions database's connection."""

    def __init__(self, db: SQLiteDB) -> None:
        self._sql = db  # its migrations (storage/migrations.py) made the table

    def add_exposure(self, row: Exposure) -> None:
        with self._sql.tx() as db:
            db.execute(
                f"INSERT INTO exposures ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                exposure_row(row),
            )

    def exposures(self, experiment: str) -> list[Exposure]:
        with self._sql.lock:
            rows = self._sql.conn.execute(
                f"SELECT {COLUMNS} FROM exposures WHERE experiment = ? ORDER BY ts, rowid",
                (experiment,),
            ).fetchall()
        return [exposure_from(r) for r in rows]

    def feedback_since(
        self, user_ids: Iterable[str], since: float
    ) -> list[tuple[str, str, float, str, float | None, str | None]]:
        """The feedback events of ``user_ids`` at or after ``since``."""
        ids = sorted(set(user_ids))
        out: list[tuple[str, str, float, str, float | None, str | None]] = []
        with self._sql.lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out += self._sql.conn.execute(
                    f"SELECT {FEEDBACK} FROM feedback WHERE ts >= ? AND user_id IN ({marks})",
                    (since, *chunk),
                ).fetchall()
        return out

    def delete_user(self, user_id: str) -> int:
        with self._sql.tx() as db:
            return db.execute("DELETE FROM exposures WHERE user_id = ?", (user_id,)).rowcount
