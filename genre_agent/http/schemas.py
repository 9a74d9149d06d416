"""Request bodies and query parameters of the HTTP API: strict (unknown fields are errors).

One type per concept: every id is a string, and a JSON number sent as an id is turned into
its string at this edge (``{"history": [1, 260]}`` is ``["1", "260"]``). Timestamps are Unix
seconds or RFC 3339 text (``storage.interactions.Timestamp``). No text takes a lone
surrogate (pydantic refuses one in a str field; ``no_surrogates`` in a filter's values):
it is a 422 naming the field, never a 500 further down.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from genre_agent.catalog.items import Item
from genre_agent.errors import check_unicode
from genre_agent.service.feedback import FeedbackEvent
from genre_agent.storage.interactions import Interaction, Timestamp


def no_surrogates(value: Any) -> Any:
    """A filter's strings (keys and values, at any depth) checked like str fields."""
    if isinstance(value, str):
        check_unicode(value)
    elif isinstance(value, dict):
        for key, sub in value.items():
            no_surrogates(key)
            no_surrogates(sub)
    elif isinstance(value, list):
        for sub in value:
            no_surrogates(sub)
    return value


Filters = Annotated[dict[str, Any], AfterValidator(no_surrogates)]
ItemIdIn = Annotated[str, Field(min_length=1, max_length=64)]
UserIdIn = Annotated[str, Field(min_length=1, max_length=200)]
TraceLevel = Literal["none", "summary", "full"]

TRACE_DOC = (
    "How much of the trace to send: none (no trace), summary (default: the trace without "
    "its candidate list and raw LLM outputs), full (everything, for audit and replay)."
)
EXPLAIN_DOC = (
    "true: the LLM writes rationales (and ranks, in an LLM ranking mode) within "
    "service.llm_budget_s. false (default): the same pipeline without the LLM, in "
    "milliseconds. A request with Accept: text/event-stream is explained unless it says "
    "explain=false."
)


def _k() -> Any:
    """``k`` follows the bounds of ranking.k (RankingConfig) on every endpoint."""
    return Field(None, ge=1, le=100, description="How many items (1..100; default ranking.k).")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class HistoryRow(_Strict):
    """One history entry with its rating (below retrieval.min_liked_rating: not liked)."""

    item_id: ItemIdIn = Field(description="The item's id (a number is read as its string).")
    rating: float | None = Field(
        None, allow_inf_nan=False, description="The user's rating; null: an implicit positive."
    )
    timestamp: Timestamp = Field(
        0.0, description="When: Unix seconds, or RFC 3339 text with a zone (2026-12-07T03:00:00Z)."
    )


HistoryIn = list[ItemIdIn | HistoryRow]
HISTORY_DOC = (
    "The user's history, oldest first: item ids (strings; numbers are read as strings) or "
    "rows {item_id, rating, timestamp}. Its items are never recommended back."
)


def history_entries(history: HistoryIn | None, user_id: str | None) -> list[Any] | None:
    """Item ids stay ids; rows become Interactions (their ratings decide what is liked)."""
    if history is None:
        return None
    return [
        h if isinstance(h, str) else Interaction(user_id or "", h.item_id, h.timestamp, h.rating)
        for h in history
    ]


def history_ids(history: HistoryIn | None) -> list[str]:
    return [h if isinstance(h, str) else h.item_id for h in history or []]


class RecommendQuery(_Strict):
    """GET /v1/recommend/{user_id} query parameters."""

    k: int | None = _k()
    query: str | None = Field(None, max_length=2000, description="What the user asks for now.")
    where: str | None = Field(
        None, max_length=10_000, description='Chroma metadata filter as JSON: {"year": 1999}'
    )
    explain: bool | None = Field(None, description=EXPLAIN_DOC)
    trace: TraceLevel = Field("summary", description=TRACE_DOC)


class RecommendBody(_Strict):
    user_id: UserIdIn | None = Field(
        None, description="A stored user: their interactions are the history unless one is sent."
    )
    history: HistoryIn | None = Field(None, max_length=1000, description=HISTORY_DOC)
    query: str | None = Field(None, max_length=2000, description="What the user asks for now.")
    filters: Filters | None = Field(
        None, description='Chroma metadata filter: {"genre_comedy": true, "year": {"$gte": 1990}}'
    )
    k: int | None = _k()
    exclude: list[ItemIdIn] = Field(
        default_factory=list, max_length=1000, description="Item ids never to recommend."
    )
    explain: bool | None = Field(None, description=EXPLAIN_DOC)
    trace: TraceLevel = Field("summary", description=TRACE_DOC)


class BatchBody(_Strict):
    """Up to 100 recommendation requests answered in one response, in order."""

    requests: list[RecommendBody] = Field(
        min_length=1, max_length=100, description="The requests, each as for POST /v1/recommend."
    )


class RankBody(_Strict):
    candidates: list[ItemIdIn] = Field(
        min_length=1,
        max_length=500,
        description="The item ids to order; those in the history are left out (with a note).",
    )
    user_id: UserIdIn | None = Field(None, description="A stored user whose history to use.")
    history: HistoryIn | None = Field(None, max_length=1000, description=HISTORY_DOC)
    query: str | None = Field(None, max_length=2000, description="What the user asks for now.")
    filters: Filters | None = Field(
        None, description="Chroma metadata filter: candidates it rejects are dropped."
    )
    k: int | None = _k()
    explain: bool | None = Field(None, description=EXPLAIN_DOC)
    trace: TraceLevel = Field("summary", description=TRACE_DOC)


class SimilarQuery(_Strict):
    k: int | None = _k()
    explain: bool | None = Field(None, description=EXPLAIN_DOC)
    trace: TraceLevel = Field("summary", description=TRACE_DOC)


class PageQuery(_Strict):
    """Pagination of every list endpoint."""

    limit: int = Field(20, ge=1, le=500, description="At most this many entries (1..500).")
    cursor: str | None = Field(
        None,
        max_length=500,
        description="Opaque: the next_cursor of the previous page (absent: the first page).",
    )


class SessionsQuery(PageQuery):
    user_id: UserIdIn | None = Field(None, description="Only this user's sessions.")


class ItemsBody(_Strict):
    """Items as catalog rows ({"id", "title", "text", "metadata"}), validated like a
    catalog file: any bad row rejects the whole batch."""

    items: list[Any] = Field(
        min_length=1,
        max_length=10_000,
        description='Catalog rows {"id", "title", "text", "metadata"}; ids are strings.',
    )


class SessionBody(_Strict):
    user_id: UserIdIn | None = Field(None, description="The stored user chatting, if any.")


class MessageBody(_Strict):
    message: str = Field(min_length=1, max_length=2000, description="The user's chat message.")


class FeedbackBody(_Strict):
    """Feedback events (genre_agent.service.feedback); an event id stored before is a
    duplicate, not stored again, so a client may safely retry a batch."""

    events: list[FeedbackEvent] = Field(
        min_length=1, max_length=10_000, description="The events, stored in one transaction."
    )


# -- responses (models the routes answer with and openapi.json describes) ------------------


class Page(BaseModel):
    """Fields every list answer has."""

    request_id: str = Field(description="This response's id (also in the X-Request-ID header).")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null: this was the last page."
    )


class ItemsPage(Page):
    items: list[Item] = Field(description="Catalog items, by id.")


class CountedItem(BaseModel):
    item: Item = Field(description="The catalog item.")
    count: int = Field(description="Its interactions and feedback events, every user.")


class PopularPage(Page):
    items: list[CountedItem] = Field(description="Most interacted-with first (ties: by id).")


class DatedItem(BaseModel):
    item: Item = Field(description="The catalog item.")
    added: float = Field(
        description="When it was first indexed, Unix seconds (0: indexed before this was kept)."
    )


class LatestPage(Page):
    items: list[DatedItem] = Field(description="Most recently indexed first (ties: by id).")


class InteractionOut(BaseModel):
    item_id: str = Field(description="The item's id.")
    timestamp: float = Field(description="When, Unix seconds.")
    rating: float | None = Field(description="The rating; null: an implicit positive.")
    origin: Literal["file", "feedback"] = Field(
        description="file: loaded by genre index --interactions; feedback: a feedback event."
    )


class InteractionsPage(Page):
    user_id: str = Field(description="The user.")
    items: list[InteractionOut] = Field(description="The history as readers see it, oldest first.")


class FeedbackOut(BaseModel):
    event_id: str = Field(description="The event's id (its idempotency key).")
    item_id: str = Field(description="The item.")
    type: str = Field(description="view, click, like, dislike, rating or purchase.")
    value: float | None = Field(description="The value as sent (the rating of a rating event).")
    timestamp: float = Field(description="When it happened, Unix seconds.")
    rating: float | None = Field(description="What the history sees (null: implicit positive).")
    request_id: str | None = Field(description="The recommendation response it answers, if named.")
    recorded: float = Field(description="When it was stored, Unix seconds.")


class FeedbackPage(Page):
    user_id: str = Field(description="The user.")
    items: list[FeedbackOut] = Field(description="The user's events, in the order stored.")


class UserOut(BaseModel):
    request_id: str = Field(description="This response's id.")
    user_id: str = Field(description="The user.")
    interactions: int = Field(description="Stored interactions and events (the history length).")
    feedback_events: int = Field(description="Of those, feedback events.")


class SessionOut(BaseModel):
    id: str = Field(description="The session id.")
    user_id: str | None = Field(description="The stored user chatting, if any.")
    updated: float = Field(description="Last saved, Unix seconds.")


class SessionsPage(Page):
    items: list[SessionOut] = Field(description="Sessions, least recently updated first.")


class Problem(BaseModel):
    row: int = Field(description="1-based position of the bad row in the request's items.")
    field: str = Field(description="The field at fault.")
    reason: str = Field(description="Why it is refused.")
    value: str = Field(description="The value, shortened.")


class ErrorOut(BaseModel):
    """Every error answer: ``detail`` says what is wrong and names the field or id."""

    detail: Any = Field(
        description="One line naming the field, id or setting at fault (a list of pydantic "
        "errors for a 422 from validation)."
    )
    message: str | None = Field(None, description="422 from validation: the errors in one line.")
    problems: list[Problem] | None = Field(None, description="PUT /v1/items: every bad row.")


class BatchEntry(BaseModel):
    status: int = Field(description="What this request alone would have answered: 200, 404, 422.")
    request_id: str = Field(description="This entry's id, for feedback on its items.")
    result: dict[str, Any] | None = Field(
        None, description="The recommendation, as POST /v1/recommend answers it (status 200)."
    )
    error: ErrorOut | None = Field(None, description="Why not (status other than 200).")


class BatchOut(BaseModel):
    request_id: str = Field(description="The batch's id.")
    results: list[BatchEntry] = Field(description="One entry per request, in order.")


class IndexReportOut(BaseModel):
    added: int = Field(description="Items new to the index.")
    updated: int = Field(description="Items replaced (their content changed).")
    unchanged: int = Field(description="Items sent again unchanged (not re-embedded).")
    total: int = Field(description="Items in the request.")


class FeedbackResultOut(BaseModel):
    stored: int = Field(description="Events stored now.")
    duplicates: list[str] = Field(
        description="Event ids not stored: stored before (or forgotten with their user)."
    )


class ForgetOut(BaseModel):
    user_id: str = Field(description="The user forgotten.")
    interactions: int = Field(description="Loaded interactions deleted.")
    events: int = Field(description="Feedback events deleted.")
    profiles: int = Field(description="Stored profiles deleted (0 or 1).")
    forgotten_items: int = Field(description="Entries of the user's forgotten-item list deleted.")
    chat_sessions: int = Field(description="Chat sessions deleted.")
    exposures: int = Field(description="Exposures of online experiments deleted.")
    total: int = Field(description="Everything deleted.")


class DeletedOut(BaseModel):
    deleted: str = Field(description="The id deleted.")


class SessionStartedOut(BaseModel):
    id: str = Field(description="The new session's id: POST /v1/sessions/{id}/messages.")
    user_id: str | None = Field(description="The stored user chatting, if any.")


class LiveOut(BaseModel):
    status: str = Field(description='"live": the process answers.')


class ReadyOut(BaseModel):
    status: str = Field(description='"ready"; 503 with "loading" or "unavailable" otherwise.')
    items: int = Field(description="Items in the index.")
    engine: str = Field(description="The configured LLM engine.")
    load_seconds: float = Field(description="How long loading the stores, sources and engine took.")
