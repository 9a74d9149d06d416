"""The /v1 endpoints: each one parses, calls the Recommender (through Service), answers.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, and every
thread shares the one Recommender and engine (whose owner thread batches their LLM calls).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from genre_agent.catalog.items import validate_rows
from genre_agent.errors import CatalogError, GenreError, RowProblem
from genre_agent.http.errors import ItemId, SessionId, UserId, errors, genre_status
from genre_agent.http.metrics import Metrics
from genre_agent.http.schemas import (
    BatchBody,
    BatchOut,
    DeletedOut,
    FeedbackBody,
    FeedbackResultOut,
    ForgetOut,
    IndexReportOut,
    ItemsBody,
    MessageBody,
    RankBody,
    RecommendBody,
    RecommendQuery,
    SessionBody,
    SessionStartedOut,
    SimilarQuery,
    TraceLevel,
    history_entries,
    history_ids,
    no_surrogates,
)
from genre_agent.http.service import Service
from genre_agent.http.views import RecommendationOut, render, request_id
from genre_agent.service.chat import IntentError, SessionState, Turn
from genre_agent.service.feedback import forget_user, record_feedback
from genre_agent.types import Recommendation, StreamEvent

SSE = "text/event-stream"


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
    try:
        no_surrogates(where)
        return where
    except ValueError as exc:
        raise HTTPException(422, f"where: {exc}") from None


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


def _sse(
    first: StreamEvent, events: Iterator[StreamEvent], view: Callable[[Recommendation], Any]
) -> Iterator[bytes]:
    for ev in itertools.chain([first], events):
        if ev.kind == "rationale" and ev.item is not None:
            data = ev.item.model_dump_json()
        elif ev.recommendation is not None:
            data = json.dumps(view(ev.recommendation), ensure_ascii=False)
        else:
            data = "{}"
        yield f"event: {ev.kind}\ndata: {data}\n\n".encode()


def _string_id(row: dict[str, Any]) -> dict[str, Any]:
    """A row whose id came as a JSON number, with the id as its string (ids are strings)."""
    got = row.get("id")
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        return {**row, "id": str(got)}
    return row


def wants_stream(request: Request) -> bool:
    return SSE in request.headers.get("accept", "")


def explained(request: Request, explain: bool | None) -> bool:
    """explain as asked; unset: true for a stream (it exists for the words), else false."""
    return wants_stream(request) if explain is None else explain


def build_router(service: Service, metrics: Metrics) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def view(level: TraceLevel, rid: str) -> Callable[[Recommendation], dict[str, Any]]:
        return lambda rec: render(rec, level, rid, service.notes)

    def answer(request: Request, explain: bool | None, level: TraceLevel, **args: Any) -> Response:
        shape = view(level, request_id(request))
        events = service.stream(explained(request, explain), request_id=request_id(request), **args)
        first = next(events)  # request errors raise here, before any byte is sent
        if wants_stream(request):

            def counted() -> Iterator[StreamEvent]:
                for ev in events:
                    if ev.kind == "done" and ev.recommendation is not None:
                        metrics.observe_result(ev.recommendation)
                    yield ev

            return StreamingResponse(_sse(first, counted(), shape), media_type=SSE)
        done = first
        for ev in events:
            done = ev
        assert done.kind == "done" and done.recommendation is not None
        metrics.observe_result(done.recommendation)
        return JSONResponse(shape(done.recommendation))

    rec_doc: dict[int | str, dict[str, Any]] = {
        200: {
            "model": RecommendationOut,
            "description": "The ranked items, the request id and the trace. With `Accept: "
            'text/event-stream`: events "ranked" (the list), "rationale" (one item each), '
            '"done" (the result).',
        }
    }

    @router.get(
        "/recommend/{user_id}",
        responses={**rec_doc, **errors(404, 422, 503)},
        response_model=None,
    )
    def recommend_user(
        request: Request, user_id: UserId, params: Annotated[RecommendQuery, Query()]
    ) -> Response:
        """Recommend for a stored user (their interactions are the history). A user with no
        usable history gets the cold-start answer (``trace.strategy``, a note). Fast by
        default: ?explain=true (or Accept: text/event-stream) asks for rationales."""
        filters = _check_filters(_check_where(params.where), "where")
        return answer(
            request,
            params.explain,
            params.trace,
            user_id=user_id,
            query=params.query,
            k=params.k,
            filters=filters,
        )

    def recommend_args(body: RecommendBody) -> dict[str, Any]:
        return dict(
            user_id=body.user_id,
            history=history_entries(body.history, body.user_id),
            query=body.query,
            k=body.k,
            filters=_check_filters(body.filters, "filters"),
            exclude=body.exclude,
        )

    @router.post(
        "/recommend", responses={**rec_doc, **errors(404, 413, 422, 503)}, response_model=None
    )
    def recommend(request: Request, body: RecommendBody) -> Response:
        """Recommend for a user id, a history and/or a query. Fast by default:
        "explain": true (or Accept: text/event-stream) asks for rationales."""
        return answer(request, body.explain, body.trace, **recommend_args(body))

    @router.post(
        "/recommend/batch",
        responses={200: {"model": BatchOut}, **errors(413, 422, 503)},
        response_model=None,
    )
    def recommend_batch(request: Request, body: BatchBody) -> Response:
        """Several recommendations in one call, answered in order. Each entry has its own
        status, request id and result or error: one unknown user does not fail the rest.
        Entries are fast unless they say "explain": true; each explained entry then has its
        own service.llm_budget_s, one after another (keep explained batches small)."""
        rid = request_id(request)
        results: list[dict[str, Any]] = []
        for n, one in enumerate(body.requests):
            entry_id = f"{rid}-{n}"
            try:
                rec = service.recommend(
                    bool(one.explain), request_id=entry_id, **recommend_args(one)
                )
            except HTTPException as exc:
                results.append(
                    {
                        "status": exc.status_code,
                        "request_id": entry_id,
                        "error": {"detail": exc.detail},
                    }
                )
                continue
            except GenreError as exc:
                status = genre_status(exc)
                if status >= 500:
                    raise
                results.append(
                    {"status": status, "request_id": entry_id, "error": {"detail": str(exc)}}
                )
                continue
            metrics.observe_result(rec)
            results.append(
                {"status": 200, "request_id": entry_id, "result": view(one.trace, entry_id)(rec)}
            )
        return JSONResponse({"request_id": rid, "results": results})

    @router.post(
        "/rank",
        responses={200: {"model": RecommendationOut}, **errors(404, 413, 422, 503)},
        response_model=None,
    )
    def rank(request: Request, body: RankBody) -> Response:
        """Order the given candidates for a history, a query or a stored user; with none of
        them, by popularity (strategy "popular"). Candidates in the history are left out,
        as recommend leaves them out, and the trace notes which."""
        if body.history is not None:
            seen = set(history_ids(body.history))
        elif body.user_id is not None:
            seen = {r.item_id for r in service.rec.interactions.history(body.user_id)}
        else:
            seen = set()
        dropped = [c for c in body.candidates if c in seen]
        candidates = [c for c in body.candidates if c not in seen]
        if not candidates:
            raise HTTPException(
                422, f"candidates: every one is in the user's history ({', '.join(dropped[:10])})"
            )
        result = service.rank(
            bool(body.explain),
            candidates,
            user_id=body.user_id,
            history=history_entries(body.history, body.user_id),
            query=body.query,
            k=body.k,
            filters=_check_filters(body.filters, "filters"),
        )
        if dropped:
            trace = result.trace.model_copy(deep=True)
            shown = ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else "")
            trace.notes.append(f"{len(dropped)} candidates are in the history, left out: {shown}")
            result = result.model_copy(update={"trace": trace})
        metrics.observe_result(result)
        return JSONResponse(view(body.trace, request_id(request))(result))

    @router.get(
        "/items/{item_id}/similar",
        responses={**rec_doc, **errors(404, 422, 503)},
        response_model=None,
    )
    def similar(
        request: Request, item_id: ItemId, params: Annotated[SimilarQuery, Query()]
    ) -> Response:
        """Items like this one: the pipeline with the item as the whole history."""
        if not service.rec.sources.lookup([item_id]):
            raise HTTPException(404, f"item {item_id!r} is not in the index")
        return answer(request, params.explain, params.trace, history=[item_id], k=params.k)

    @router.put("/items", response_model=IndexReportOut, responses=errors(413, 422, 503))
    def put_items(body: ItemsBody) -> dict[str, int]:
        """Add or replace items, validated like a catalog file: one bad row (named by its
        1-based position and field) rejects the whole batch, and nothing is written."""
        src = "body.items"
        rows = [
            (n, _string_id(raw))
            if isinstance(raw, dict)
            else RowProblem(src, n, "<row>", "expected a JSON object", str(raw))
            for n, raw in enumerate(body.items, start=1)
        ]
        try:
            items = validate_rows(rows, src)
        except CatalogError as exc:  # the words of this door: a request, not a file
            raise CatalogError(exc.problems, source="request") from None
        report = service.rec.index(items)
        service.cache.clear()  # cached answers may name replaced items, or miss new ones
        return {
            "added": report.added,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "total": report.total,
        }

    @router.delete("/items/{item_id}", response_model=DeletedOut, responses=errors(404, 422, 503))
    def delete_item(item_id: ItemId) -> dict[str, str]:
        """Remove an item from the index (its interactions stay)."""
        if not service.rec.delete_items([item_id]):
            raise HTTPException(404, f"item {item_id!r} is not in the index")
        service.cache.clear()
        return {"deleted": item_id}

    # -- feedback and users -------------------------------------------------------------
    @router.post("/feedback", response_model=FeedbackResultOut, responses=errors(413, 422, 503))
    def feedback(body: FeedbackBody) -> dict[str, Any]:
        """Store feedback events (committed before the answer); repeats by event id are
        listed as duplicates. Histories and popularity see them at once. An event may name
        the request_id of the recommendation that showed its item."""
        result = record_feedback(service.rec.interactions, body.events, service.cache)
        return {"stored": result.stored, "duplicates": result.duplicates}

    @router.delete("/users/{user_id}", response_model=ForgetOut, responses=errors(422, 503))
    def forget(user_id: UserId) -> dict[str, Any]:
        """Delete everything stored about a user: interactions, feedback events, profile,
        forgotten-item list and chat sessions; the rows are gone from disk (zeroed, the WAL
        checkpointed). Answers with the counts deleted."""
        report = forget_user(service.rec.config, service.rec.interactions, user_id)
        service.cache.invalidate_user(user_id)
        return {**dataclasses.asdict(report), "total": report.total()}

    # -- chat ---------------------------------------------------------------------------
    @router.post(
        "/sessions",
        status_code=201,
        response_model=SessionStartedOut,
        responses=errors(413, 422, 503),
    )
    def start_session(body: SessionBody) -> dict[str, str | None]:
        """Start a chat session (optionally for a stored user)."""
        session = service.start_session(body.user_id, None)
        return {"id": session.id, "user_id": body.user_id}

    def _lock(session_id: str) -> threading.Lock:
        try:
            return service.session_lock(session_id)
        except GenreError as exc:
            raise HTTPException(404, str(exc)) from None

    def _resume(session_id: str) -> Any:
        try:
            return service.resume_session(session_id)
        except GenreError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.post(
        "/sessions/{session_id}/messages",
        responses={200: {"model": Turn}, **errors(404, 413, 422, 503)},
    )
    def send_message(session_id: SessionId, body: MessageBody) -> Response:
        """One chat turn. A turn whose intent failed validation is answered with its
        ``error`` set (and kept in the session)."""
        with _lock(session_id):
            session = _resume(session_id)
            try:
                turn = session.send(body.message)
            except IntentError:
                turn = session.turns[-1]
        return _json(turn)

    @router.get(
        "/sessions/{session_id}", responses={200: {"model": SessionState}, **errors(404, 422)}
    )
    def get_session(session_id: SessionId) -> Response:
        """The session's state and every turn."""
        return _json(_resume(session_id).state)

    @router.delete("/sessions/{session_id}", response_model=DeletedOut, responses=errors(404, 422))
    def delete_session(session_id: SessionId) -> dict[str, str]:
        """Delete a chat session (after a turn running in it finishes)."""
        if not service.delete_session(session_id):
            raise HTTPException(404, f"no chat session {session_id!r}")
        return {"deleted": session_id}

    return router
