"""User interactions: a small SQLite store, plus MovieLens / CSV / JSONL readers."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from genre_agent.catalog.items import DecodedLines, csv_dict_rows
from genre_agent.errors import CatalogError, RowProblem
from genre_agent.storage.migrations import migrate_sqlite
from genre_agent.storage.sqlite import SQLiteDB


def to_epoch(value: Any) -> Any:
    """Unix seconds from a number, a numeric string, or RFC 3339 text with a zone
    ("2026-12-07T03:00:00Z", "2026-12-07T04:00:00+01:00"); anything else is left for the
    float check to refuse."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "expected Unix seconds or RFC 3339 text such as 2026-12-07T03:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise ValueError("an RFC 3339 timestamp needs its zone: Z or an offset such as +01:00")
    return when.timestamp()


# What every timestamp field accepts: Unix seconds (a number) or RFC 3339 text with a zone.
Timestamp = Annotated[float, BeforeValidator(to_epoch), Field(ge=0.0, allow_inf_nan=False)]


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    timestamp: float = 0.0
    rating: float | None = None


# How rows that share a timestamp are ordered: "random" (a seeded draw that does not
# depend on the ids) or "id" (by item id: the old rule, kept to reproduce old numbers).
TieOrder = Literal["random", "id"]


def tie_seed(seed: int, user_id: str) -> int:
    """A 64-bit seed from (seed, user), stable across processes."""
    blob = f"{seed}\x00{user_id}\x00ties".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big")


def time_ordered(
    rows: Iterable[Interaction], seed: int = 0, ties: TieOrder = "random"
) -> list[Interaction]:
    """One user's rows by timestamp, rows that share a timestamp in a seeded random order.

    Sorting ties by item id would make "the later of two same-second items" mean "the
    larger id", a rule an order-aware model learns and a leave-last-out split rewards.
    With ``ties="random"`` the rows are first put in a canonical order (time, item id,
    rating), so the result does not depend on the order they arrived in; each group of
    equal timestamps is then shuffled by a generator seeded by (``seed``, user id), so the
    position of a row in its group does not depend on its id. ``ties="id"`` keeps the
    canonical order (the old rule).
    """
    ordered = sorted(
        rows, key=lambda r: (r.timestamp, r.item_id, r.rating is None, r.rating or 0.0)
    )
    if ties == "id" or len(ordered) < 2:
        return ordered
    rng = random.Random(tie_seed(seed, ordered[0].user_id))
    out: list[Interaction] = []
    start = 0
    for end in range(1, len(ordered) + 1):
        if end == len(ordered) or ordered[end].timestamp != ordered[start].timestamp:
            group = ordered[start:end]
            if len(group) > 1:
                rng.shuffle(group)
            out += group
            start = end
    return out


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


# Feedback events (genre_agent.service.feedback): one row per event, keyed by its id so a
# redelivered event is not stored twice. ``rating`` is what readers see (None = implicit
# positive); ``type`` and ``value`` are kept as sent. The tables: storage/migrations.py.


@dataclass(frozen=True)
class FeedbackRow:
    """One feedback event as stored (``rating`` already derived from ``type``/``value``)."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    value: float | None
    timestamp: float
    rating: float | None
    # The recommendation response (its ``request_id``) this event answers, if the client
    # named one: the impression a click is attributed to.
    request_id: str | None = None


class InteractionStore:
    """user -> items, ordered by time.

    Two tables: ``interactions`` (loaded files: re-adding the same (user, item) replaces it)
    and ``feedback`` (events: each kept, idempotent by event id). Readers see both.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._sql = SQLiteDB(path)
        self.db = self._sql.conn
        with self._sql.lock:
            migrate_sqlite(self.db, str(path), "interactions")
        if str(path) != ":memory:":
            # Readers (genre serve) never wait for a writer (genre consume) and the other
            # way round; the mode is stored in the file.
            with self._sql.lock:
                self.db.execute("PRAGMA journal_mode=WAL")
        # item_counts() cache: counts as of _counts_version, updated by the new events only.
        self._counts: dict[str, int] | None = None
        self._counts_version: tuple[int, int, int] = (-1, -1, -1)

    @property
    def sqlite(self) -> SQLiteDB:
        """The database connection (the exposures table shares it)."""
        return self._sql

    def add(self, rows: Iterable[Interaction]) -> int:
        with self._sql.tx() as db:
            cur = db.executemany(
                "INSERT OR REPLACE INTO interactions VALUES (?, ?, ?, ?)",
                ((r.user_id, r.item_id, r.timestamp, r.rating) for r in rows),
            )
        return cur.rowcount

    def add_events(self, rows: Iterable[FeedbackRow]) -> list[str]:
        """Store events in one transaction, committed before returning; return the ids
        not stored because that id was stored (or forgotten) before, in this batch or any
        earlier one."""
        duplicates: list[str] = []
        now = time.time()
        with self._sql.tx() as db:
            for r in rows:
                cur = db.execute(
                    "INSERT OR IGNORE INTO feedback (event_id, user_id, item_id, type, value, ts,"
                    " rating, recorded, request_id) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?"
                    " WHERE NOT EXISTS (SELECT 1 FROM feedback_forgotten WHERE event_id = ?)",
                    (
                        r.event_id,
                        r.user_id,
                        r.item_id,
                        r.type,
                        r.value,
                        r.timestamp,
                        r.rating,
                        now,
                        r.request_id,
                        r.event_id,
                    ),
                )
                if cur.rowcount != 1:
                    duplicates.append(r.event_id)
        return duplicates

    def event_counts(self, event_ids: Iterable[str]) -> dict[str, int]:
        """How many times each id is stored (0 or 1: the id is the key)."""
        ids = list(event_ids)
        found: dict[str, int] = {}
        with self._sql.lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for eid, n in self.db.execute(
                    f"SELECT event_id, COUNT(*) FROM feedback WHERE event_id IN ({marks})"
                    " GROUP BY event_id",
                    chunk,
                ):
                    found[eid] = int(n)
        return {eid: found.get(eid, 0) for eid in ids}

    def event_count(self) -> int:
        with self._sql.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def delete_user(self, user_id: str) -> tuple[int, int]:
        """Delete every interaction and event of ``user_id`` in one transaction; the event
        ids are remembered so a redelivered event stays deleted. Returns (interactions,
        events) deleted."""
        with self._sql.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO feedback_forgotten"
                " SELECT event_id FROM feedback WHERE user_id = ?",
                (user_id,),
            )
            n_rows = db.execute("DELETE FROM interactions WHERE user_id = ?", (user_id,)).rowcount
            n_events = db.execute("DELETE FROM feedback WHERE user_id = ?", (user_id,)).rowcount
            db.execute(
                "INSERT INTO store_meta VALUES ('deletes', 1)"
                " ON CONFLICT (key) DO UPDATE SET n = n + 1"
            )
        # The deleted rows must leave the disk, not just the tables: secure_delete (set by
        # SQLiteDB) zeroes them in the database file, and a TRUNCATE checkpoint moves the
        # WAL's copies there and empties the WAL.
        self._sql.checkpoint()
        return n_rows, n_events

    def user_count(self, user_id: str) -> int:
        """How many interactions and events ``user_id`` has (the history's length)."""
        with self._sql.lock:
            row = self.db.execute(
                "SELECT (SELECT COUNT(*) FROM interactions WHERE user_id = ?)"
                " + (SELECT COUNT(*) FROM feedback WHERE user_id = ?)",
                (user_id, user_id),
            ).fetchone()
        return int(row[0])

    def user_event_count(self, user_id: str) -> int:
        with self._sql.lock:
            row = self.db.execute(
                "SELECT COUNT(*) FROM feedback WHERE user_id = ?", (user_id,)
            ).fetchone()
        return int(row[0])

    def interactions_page(
        self, user_id: str, offset: int, limit: int
    ) -> list[tuple[str, float, float | None, str]]:
        """``limit`` of ``user_id``'s interactions from ``offset``, in history order:
        (item_id, timestamp, rating, origin), origin "file" (a loaded interaction) or
        "feedback" (an event)."""
        with self._sql.lock:
            cur = self.db.execute(
                "SELECT item_id, ts, rating, 'file' FROM interactions WHERE user_id = ?"
                " UNION ALL SELECT item_id, ts, rating, 'feedback' FROM feedback"
                " WHERE user_id = ? ORDER BY 2, 1, 4, 3 LIMIT ? OFFSET ?",
                (user_id, user_id, limit, offset),
            )
            return [(str(a), float(b), c, str(d)) for a, b, c, d in cur.fetchall()]

    def feedback_page(
        self, user_id: str, after: int, limit: int
    ) -> list[tuple[int, FeedbackRow, float]]:
        """``limit`` of ``user_id``'s feedback events stored after row ``after``, in the
        order they were stored: (row, event, recorded at)."""
        with self._sql.lock:
            cur = self.db.execute(
                "SELECT rowid, event_id, user_id, item_id, type, value, ts, rating, request_id,"
                " recorded FROM feedback WHERE user_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                (user_id, after, limit),
            )
            return [
                (int(r[0]), FeedbackRow(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]), r[9])
                for r in cur.fetchall()
            ]

    def version(self) -> tuple[int, int, int]:
        """Changes whenever what readers see changes, in this process or another; cheap
        (three index look-ups): (last interactions rowid, last feedback rowid, deletes).
        An INSERT OR REPLACE gets a new rowid; rowids grow in commit order (SQLite has one
        writer at a time)."""
        with self._sql.lock:
            row = self.db.execute(
                "SELECT (SELECT IFNULL(MAX(rowid), 0) FROM interactions),"
                " (SELECT IFNULL(MAX(rowid), 0) FROM feedback),"
                " (SELECT IFNULL(MAX(n), 0) FROM store_meta WHERE key = 'deletes')"
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def history(self, user_id: str) -> list[Interaction]:
        """The user's rows by time; rows that share a timestamp in arrival order (loaded
        interactions by rowid, then feedback events by rowid), never by item id."""
        with self._sql.lock:
            cur = self.db.execute(
                "SELECT user_id, item_id, ts, rating FROM ("
                " SELECT user_id, item_id, ts, rating, 0 AS src, rowid AS seq FROM interactions"
                " WHERE user_id = ?1"
                " UNION ALL SELECT user_id, item_id, ts, rating, 1, rowid FROM feedback"
                " WHERE user_id = ?1) ORDER BY ts, src, seq",
                (user_id,),
            )
            return [Interaction(*row) for row in cur.fetchall()]

    def item_counts(self) -> dict[str, int]:
        """Interactions per item (every user, every item seen at least once; each feedback
        event counts)."""
        with self._sql.lock:
            version = self.version()
            old = self._counts_version
            if self._counts is None or version[0] != old[0] or version[2] != old[2]:
                # Events bounded by the version read: a later one is counted next time.
                cur = self.db.execute(
                    "SELECT item_id, COUNT(*) FROM (SELECT item_id FROM interactions"
                    " UNION ALL SELECT item_id FROM feedback WHERE rowid <= ?) GROUP BY item_id",
                    (version[1],),
                )
                self._counts = {item: int(n) for item, n in cur.fetchall()}
            elif version[1] != old[1]:  # only new events: count those
                counts = self._counts
                for item, n in self.db.execute(
                    "SELECT item_id, COUNT(*) FROM feedback WHERE rowid > ? AND rowid <= ?"
                    " GROUP BY item_id",
                    (old[1], version[1]),
                ):
                    counts[item] = counts.get(item, 0) + int(n)
            self._counts_version = version
            return dict(self._counts)

    def all(self) -> list[Interaction]:
        """Every stored interaction and event, ordered by (user, time, item, rating)."""
        with self._sql.lock:
            cur = self.db.execute(
                "SELECT user_id, item_id, ts, rating FROM all_interactions"
                " ORDER BY user_id, ts, item_id, rating"
            )
            return [Interaction(*row) for row in cur.fetchall()]

    def count(self) -> int:
        with self._sql.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM all_interactions").fetchone()[0])

    def fingerprint(self) -> str:
        """SHA-256 of every stored interaction, in a canonical order (fitted-model provenance)."""
        digest = hashlib.sha256()
        for row in self.all():
            digest.update(
                json.dumps([row.user_id, row.item_id, row.timestamp, row.rating]).encode()
            )
        return digest.hexdigest()

    def users(self) -> Iterator[str]:
        with self._sql.lock:
            rows = self.db.execute(
                "SELECT DISTINCT user_id FROM all_interactions ORDER BY 1"
            ).fetchall()
        for (user,) in rows:
            yield user

    def describe(self) -> str:
        """Where the store is, for messages."""
        return str(self.path)

    def close(self) -> None:
        self._sql.close()
