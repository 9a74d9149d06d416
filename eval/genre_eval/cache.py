"""On-disk LLM response cache: a wrapper around the LLM Protocol, keyed by request hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM, Generation, GenRequest, LabelScores, ScoreRequest
from genre_agent.storage.sqlite import SQLiteDB


def request_key(req: GenRequest, model_id: str, revision: str) -> str:
    """SHA-256 of the canonical request (messages, constraint, sampling) and model.

    ``hint`` is excluded: it is metadata for fakes and logs, never sent to a model.
    """
    blob = {
        "model": [model_id, revision],
        "messages": [[m.role, m.content] for m in req.messages],
        "regex": req.regex,
        "assistant_prefix": req.assistant_prefix,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "seed": req.seed,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def score_key(req: ScoreRequest, model_id: str, revision: str) -> str:
    """SHA-256 of a label-scoring request (messages, labels, prefix) and model."""
    blob = {
        "model": [model_id, revision],
        "messages": [[m.role, m.content] for m in req.messages],
        "labels": list(req.labels),
        "assistant_prefix": req.assistant_prefix,
    }
    return "score:" + hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


class CachingLLM:
    """Answers repeated requests from a SQLite file; forwards misses in one batch.

    Both generations and label scores (scoring mode) are cached, so a replayed run produces
    bit-identical rankings (and metrics) without the model.
    """

    def __init__(self, inner: LLM, path: str | Path) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.revision = inner.revision
        self.path = Path(path)
        self._sql = SQLiteDB(
            self.path, ["CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, value TEXT)"]
        )
        self.db = self._sql.conn
        self.lock = self._sql.lock
        self.hits = 0
        self.misses = 0

    def _cached(
        self,
        keys: list[str],
        requests: Sequence[Any],
        compute: Callable[[list[Any]], Sequence[Any]],
        cls: type,
    ) -> list[Any]:
        """Answers for ``keys`` from the file; misses are computed in one batch and stored."""
        with self.lock:
            rows = [
                self.db.execute("SELECT value FROM gen WHERE key = ?", (k,)).fetchone()
                for k in keys
            ]
        found: list[Any] = [cls(**json.loads(r[0])) if r else None for r in rows]
        todo = [n for n, g in enumerate(found) if g is None]
        self.hits += len(requests) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = compute([requests[n] for n in todo])
            with self.lock, self.db:
                for n, res in zip(todo, fresh, strict=True):
                    found[n] = res
                    self.db.execute(
                        "INSERT OR REPLACE INTO gen VALUES (?, ?)",
                        (keys[n], json.dumps(asdict(res), sort_keys=True)),
                    )
        return found

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        keys = [request_key(r, self.model_id, self.revision) for r in requests]
        return self._cached(keys, requests, self.inner.generate, Generation)

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        scorer = getattr(self.inner, "score_labels", None)
        if scorer is None:
            raise GenreError(
                f"ranking.mode 'scoring' needs an engine with score_labels; "
                f"{type(self.inner).__name__} has none"
            )
        keys = [score_key(r, self.model_id, self.revision) for r in requests]
        return self._cached(keys, requests, scorer, LabelScores)

    def close(self) -> None:
        self.db.close()
