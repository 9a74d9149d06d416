"""The /v1 endpoints: each one parses, calls the Recommender (through Service), answers.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, and every
thread shares the one Recommender and engine (whose owner thread batches their LLM calls).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from genre_agent.catalog.items import validate_rows
from genre_agent.errors import GenreError, RowProblem
from genre_agent.http.metrics import Metrics
from genre_agent.http.schemas import (
    FeedbackBody,
    ItemsBody,
    MessageBody,
    RankBody,
    RecommendBody,
    RecommendQuery,
    SessionBody,
    SimilarQuery,
    history_entries,
)
from genre_agent.http.service import Service
from genre_agent.service.chat import IntentError, SessionState, Turn
from genre_agent.service.feedback import forget_user, record_feedback
from genre_agent.types import Recommendation, StreamEvent

SSE = "text/event-stream"
ItemId = Annotated[str, Path(min_length=1, max_length=64)]
UserId = Annotated[str, Path(min_length=1, max_length=200)]


def _json(model: Any, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def _check_where(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        where = json.loads(raw)
    except json.JSONDecodeError as exc:
        msg = f"where: not valid JSON ({exc.msg} at column {exc.colno})"
        raise HTTPException(422, msg) from None
    if not isinstance(where, dict):
        raise HTTPException(422, "where: must be a JSON object (a Chroma metadata filter)")
    return where


def _check_filters(where: dict[str, Any] | None, field: str) -> dict[str, Any] | None:
    """A Chroma ``where`` checked by Chroma's own validator: a bad one is a 422 naming the
    field, not a store error."""
    if not where:
        return None
    from chromadb.api.types import validate_where

    try:
        validate_where(where)
        _check_operators(where)
    except ValueError as exc:
        raise HTTPException(422, f"{field}: not a valid Chroma filter: {exc}") from None
    return where


def _check_operators(where: dict[str, Any]) -> None:
    """What Chroma's validator lets through and its query then refuses: a top-level key
    that is an operator other than $and / $or."""
    for key, value in where.items():
        if key in ("$and", "$or"):
            for sub in value:
                _check_operators(sub)
        elif key.startswith("$"):
            raise ValueError(f"{key!r} is not a field name (operators at this level: $and, $or)")


def _sse(first: StreamEvent, events: Iterator[StreamEvent]) -> Iterator[bytes]:
    for ev in itertools.chain([first], events):
        body = ev.item if ev.kind == "rationale" else ev.recommendation
        data = body.model_dump_json() if body is not None else "{}"
        yield f"event: {ev.kind}\ndata: {data}\n\n".encode()


def build_router(service: Service, metrics: Metrics) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def answer(request: Request, explain: bool, **args: Any) -> Response:
        events = service.stream(explain, **args)
        first = next(events)  # request errors raise here, before any byte is sent
        if SSE in request.headers.get("accept", ""):

            def counted() -> Iterator[StreamEvent]:
                for ev in events:
                    if ev.kind == "done" and ev.recommendation is not None:
                        metrics.observe_result(ev.recommendation)
                    yield ev

            return StreamingResponse(_sse(first, counted()), media_type=SSE)
        done = first
        for ev in events:
            done = ev
        assert done.kind == "done" and done.recommendation is not None
        metrics.observe_result(done.recommendation)
        return _json(done.recommendation)

    rec_doc: dict[int | str, dict[str, Any]] = {
        200: {
            "model": Recommendation,
            "description": "The ranked items and the trace. With `Accept: text/event-stream`: "
            'events "ranked" (the list), "rationale" (one item each), "done" (the result).',
        }
    }

    @router.get("/recommend/{user_id}", responses=rec_doc, response_model=None)
    def recommend_user(
        request: Request, user_id: UserId, params: Annotated[RecommendQuery, Query()]
    ) -> Response:
        """Recommend for a stored user (their interactions are the history). A user with no
        usable history gets the cold-start answer (``trace.strategy``, a note)."""
        filters = _check_filters(_check_where(params.where), "where")
        return answer(
            request,
            params.explain,
            user_id=user_id,
            query=params.query,
            k=params.k,
            filters=filters,
        )

    @router.post("/recommend", responses=rec_doc, response_model=None)
    def recommend(request: Request, body: RecommendBody) -> Response:
        """Recommend for a user id, a history and/or a query."""
        return answer(
            request,
            body.explain,
            user_id=body.user_id,
            history=history_entries(body.history, body.user_id),
            query=body.query,
            k=body.k,
            filters=_check_filters(body.filters, "filters"),
            exclude=body.exclude,
        )

    @router.post("/rank", responses={200: {"model": Recommendation}}, response_model=None)
    def rank(body: RankBody) -> Response:
        """Order the given candidates for a history, a query or a stored user."""
        if body.history is None and not body.query and body.user_id is None:
            raise HTTPException(422, "rank needs a history, a query or a user_id")
        result = service.rank(
            body.explain,
            body.candidates,
            user_id=body.user_id,
            history=history_entries(body.history, body.user_id),
            query=body.query,
            k=body.k,
            filters=_check_filters(body.filters, "filters"),
        )
        metrics.observe_result(result)
        return _json(result)

    @router.get("/items/{item_id}/similar", responses=rec_doc, response_model=None)
    def similar(
        request: Request, item_id: ItemId, params: Annotated[SimilarQuery, Query()]
    ) -> Response:
        """Items like this one: the pipeline with the item as the whole history."""
        if not service.rec.sources.lookup([item_id]):
            raise HTTPException(404, f"item {item_id!r} is not in the index")
        return answer(request, params.explain, history=[item_id], k=params.k)

    @router.put("/items")
    def put_items(body: ItemsBody) -> dict[str, int]:
        """Add or replace items, validated like a catalog file: one bad row (named by its
        1-based position and field) rejects the whole batch, and nothing is written."""
        src = "body.items"
        rows = [
            (n, raw)
            if isinstance(raw, dict)
            else RowProblem(src, n, "<row>", "expected a JSON object", str(raw))
            for n, raw in enumerate(body.items, start=1)
        ]
        report = service.rec.index(validate_rows(rows, src))
        return {
            "added": report.added,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "total": report.total,
        }

    @router.delete("/items/{item_id}")
    def delete_item(item_id: ItemId) -> dict[str, str]:
        """Remove an item from the index (its interactions stay)."""
        if not service.rec.delete_items([item_id]):
            raise HTTPException(404, f"item {item_id!r} is not in the index")
        return {"deleted": item_id}

    # -- feedback and users -------------------------------------------------------------
    @router.post("/feedback")
    def feedback(body: FeedbackBody) -> dict[str, Any]:
        """Store feedback events (committed before the answer); repeats by event id are
        listed as duplicates. Histories and popularity see them at once."""
        result = record_feedback(service.rec.interactions, body.events)
        return {"stored": result.stored, "duplicates": result.duplicates}

    @router.delete("/users/{user_id}")
    def forget(user_id: UserId) -> dict[str, Any]:
        """Delete everything stored about a user: interactions, feedback events, profile,
        forgotten-item list and chat sessions. Answers with the counts deleted."""
        report = forget_user(service.rec.config, service.rec.interactions, user_id)
        return {**dataclasses.asdict(report), "total": report.total()}

    # -- chat ---------------------------------------------------------------------------
    @router.post("/sessions", status_code=201)
    def start_session(body: SessionBody) -> dict[str, str | None]:
        """Start a chat session (optionally for a stored user)."""
        session = service.start_session(body.user_id, None)
        return {"id": session.id, "user_id": body.user_id}

    def _resume(session_id: str) -> Any:
        try:
            return service.resume_session(session_id)
        except GenreError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.post("/sessions/{session_id}/messages", responses={200: {"model": Turn}})
    def send_message(session_id: str, body: MessageBody) -> Response:
        """One chat turn. A turn whose intent failed validation is answered with its
        ``error`` set (and kept in the session)."""
        with service.session_lock(session_id):
            session = _resume(session_id)
            try:
                turn = session.send(body.message)
            except IntentError:
                turn = session.turns[-1]
        return _json(turn)

    @router.get("/sessions/{session_id}", responses={200: {"model": SessionState}})
    def get_session(session_id: str) -> Response:
        """The session's state and every turn."""
        return _json(_resume(session_id).state)

    return router
