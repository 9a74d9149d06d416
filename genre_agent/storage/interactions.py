"""User interactions: a small SQLite store, plus MovieLens / CSV / JSONL readers."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from genre_agent.catalog.items import DecodedLines, csv_dict_rows
from genre_agent.errors import CatalogError, RowProblem
from genre_agent.storage.sqlite import SQLiteDB


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    timestamp: float = 0.0
    rating: float | None = None


def read_interactions(path: str | Path) -> list[Interaction]:
    """Read ``user_id,item_id[,timestamp][,rating]`` rows from CSV/JSONL, or MovieLens
    ``ratings.csv`` (``userId,movieId,rating,timestamp``). Bad rows raise one CatalogError
    listing every bad line (bad encoding, bad JSON, missing or non-numeric fields)."""
    path = Path(path)
    if path.is_dir():
        path = path / "ratings.csv"
    rows: list[Interaction] = []
    problems: list[RowProblem] = []

    def parse(line: int, raw: dict[str, object]) -> None:
        user = raw.get("user_id", raw.get("userId"))
        item = raw.get("item_id", raw.get("movieId"))
        if user in (None, ""):
            problems.append(RowProblem(str(path), line, "user_id", "missing"))
            return
        if item in (None, ""):
            problems.append(RowProblem(str(path), line, "item_id", "missing"))
            return
        try:
            ts = float(raw.get("timestamp") or 0)  # type: ignore[arg-type]
            rating_raw = raw.get("rating")
            rating = None if rating_raw in (None, "") else float(rating_raw)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            problems.append(RowProblem(str(path), line, "timestamp/rating", str(exc)))
            return
        if not math.isfinite(ts) or (rating is not None and not math.isfinite(rating)):
            problems.append(
                RowProblem(str(path), line, "timestamp/rating", "NaN and Infinity are not allowed")
            )
            return
        rows.append(Interaction(str(user), str(item), ts, rating))

    if not path.exists():
        raise CatalogError([RowProblem(str(path), 0, "<file>", "file not found")])
    try:
        if path.suffix.lower() in {".jsonl", ".ndjson"}:
            lines = DecodedLines(path)
            for line in lines:
                problems.extend(lines.drain())
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as exc:
                    msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                    problems.append(RowProblem(str(path), lines.line, "<json>", msg, line.strip()))
                    continue
                if not isinstance(raw, dict):
                    problems.append(
                        RowProblem(
                            str(path), lines.line, "<row>", "expected a JSON object", line.strip()
                        )
                    )
                    continue
                parse(lines.line, raw)
            problems.extend(lines.drain())
        else:
            for entry in csv_dict_rows(path):
                if isinstance(entry, RowProblem):
                    problems.append(entry)
                else:
                    parse(*entry)
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        raise CatalogError([RowProblem(str(path), 0, "<file>", reason)]) from None
    if problems:
        raise CatalogError(problems)
    return rows


class InteractionStore:
    """user -> items, ordered by time. Re-adding the same (user, item) replaces it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._sql = SQLiteDB(
            path,
            [
                "CREATE TABLE IF NOT EXISTS interactions (user_id TEXT, item_id TEXT, ts REAL,"
                " rating REAL, PRIMARY KEY (user_id, item_id))"
            ],
        )
        self.db = self._sql.conn

    def add(self, rows: Iterable[Interaction]) -> int:
        with self.db:
            cur = self.db.executemany(
                "INSERT OR REPLACE INTO interactions VALUES (?, ?, ?, ?)",
                ((r.user_id, r.item_id, r.timestamp, r.rating) for r in rows),
            )
        return cur.rowcount

    def history(self, user_id: str) -> list[Interaction]:
        cur = self.db.execute(
            "SELECT user_id, item_id, ts, rating FROM interactions WHERE user_id = ?"
            " ORDER BY ts, item_id",
            (user_id,),
        )
        return [Interaction(*row) for row in cur.fetchall()]

    def item_counts(self) -> dict[str, int]:
        """Interactions per item (every user, every item seen at least once)."""
        cur = self.db.execute("SELECT item_id, COUNT(*) FROM interactions GROUP BY item_id")
        return {item: int(n) for item, n in cur.fetchall()}

    def all(self) -> list[Interaction]:
        """Every stored interaction, ordered by (user, time, item)."""
        cur = self.db.execute(
            "SELECT user_id, item_id, ts, rating FROM interactions ORDER BY user_id, ts, item_id"
        )
        return [Interaction(*row) for row in cur.fetchall()]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM interactions").fetchone()[0])

    def fingerprint(self) -> str:
        """SHA-256 of every stored interaction, in a canonical order (fitted-model provenance)."""
        digest = hashlib.sha256()
        for row in self.all():
            digest.update(
                json.dumps([row.user_id, row.item_id, row.timestamp, row.rating]).encode()
            )
        return digest.hexdigest()

    def users(self) -> Iterator[str]:
        for (user,) in self.db.execute("SELECT DISTINCT user_id FROM interactions ORDER BY 1"):
            yield user

    def close(self) -> None:
        self.db.close()
