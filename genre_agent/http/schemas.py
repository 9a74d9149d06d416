"""Request bodies and query parameters of the HTTP API: strict (unknown fields are errors)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.service.feedback import FeedbackEvent
from genre_agent.storage.interactions import Interaction


def _k() -> Any:
    """``k`` follows the bounds of ranking.k (RankingConfig) on every endpoint."""
    return Field(None, ge=1, le=100, description="How many items (1..100; default ranking.k).")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistoryRow(_Strict):
    """One history entry with its rating (below retrieval.min_liked_rating: not liked)."""

    item_id: str = Field(min_length=1, max_length=64)
    rating: float | None = None
    timestamp: float = 0.0


HistoryIn = list[str | HistoryRow]


def history_entries(history: HistoryIn | None, user_id: str | None) -> list[Any] | None:
    """Item ids stay ids; rows become Interactions (their ratings decide what is liked)."""
    if history is None:
        return None
    return [
        h if isinstance(h, str) else Interaction(user_id or "", h.item_id, h.timestamp, h.rating)
        for h in history
    ]


class RecommendQuery(_Strict):
    """GET /v1/recommend/{user_id} query parameters."""

    k: int | None = _k()
    query: str | None = Field(None, max_length=2000)
    where: str | None = Field(
        None, max_length=10_000, description='Chroma metadata filter as JSON: {"year": 1999}'
    )
    explain: bool = Field(True, description="false: no LLM, no rationales (fast).")


class RecommendBody(_Strict):
    user_id: str | None = Field(None, min_length=1, max_length=200)
    history: HistoryIn | None = Field(None, max_length=1000)
    query: str | None = Field(None, max_length=2000)
    filters: dict[str, Any] | None = None
    k: int | None = _k()
    exclude: list[str] = Field(default_factory=list, max_length=1000)
    explain: bool = True


class RankBody(_Strict):
    candidates: list[str] = Field(min_length=1, max_length=500)
    user_id: str | None = Field(None, min_length=1, max_length=200)
    history: HistoryIn | None = Field(None, max_length=1000)
    query: str | None = Field(None, max_length=2000)
    filters: dict[str, Any] | None = None
    k: int | None = _k()
    explain: bool = True


class SimilarQuery(_Strict):
    k: int | None = _k()
    explain: bool = True


class ItemsBody(_Strict):
    """Items as catalog rows ({"id", "title", "text", "metadata"}), validated like a
    catalog file: any bad row rejects the whole batch."""

    items: list[Any] = Field(min_length=1, max_length=10_000)


class SessionBody(_Strict):
    user_id: str | None = Field(None, min_length=1, max_length=200)


class MessageBody(_Strict):
    message: str = Field(min_length=1, max_length=2000)


class FeedbackBody(_Strict):
    """Feedback events (genre_agent.service.feedback); an event id stored before is a
    duplicate, not stored again, so a client may safely retry a batch."""

    events: list[FeedbackEvent] = Field(min_length=1, max_length=10_000)
