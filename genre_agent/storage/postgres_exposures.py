"""Exposures of online experiments in PostgreSQL (the interactions component's tables)."""

from __future__ import annotations

from collections.abc import Iterable

from genre_agent.experiments.exposures import Exposure
from genre_agent.storage.exposures import COLUMNS, FEEDBACK, exposure_from, exposure_row
from genre_agent.storage.migrations import Component
from genre_agent.storage.postgres import pool


class PostgresExposures:
    """ExposureBackend on PostgreSQL, through the process's connection pool."""

    component: Component = "interactions"

    def __init__(self, url: str) -> None:
        self.pool = pool(url)
        self.pool.ensure(self.component)

    def add_exposure(self, row: Exposure) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"INSERT INTO exposures ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                exposure_row(row),
            )

    def exposures(self, experiment: str) -> list[Exposure]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM exposures WHERE experiment = %s ORDER BY ts, seq",
                (experiment,),
            ).fetchall()
        return [exposure_from(r) for r in rows]

    def feedback_since(
        self, user_ids: Iterable[str], since: float
    ) -> list[tuple[str, str, float, str, float | None, str | None]]:
        ids = sorted(set(user_ids))
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {FEEDBACK} FROM feedback WHERE ts >= %s AND user_id = ANY(%s)",
                (since, ids),
            ).fetchall()
        return [tuple(r) for r in rows]

    def delete_user(self, user_id: str) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM exposures WHERE user_id = %s", (user_id,))
            return int(cur.rowcount)
