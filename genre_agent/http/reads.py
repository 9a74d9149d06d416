"""The read endpoints: items, a user's interactions and feedback, chat sessions, the
popular and the latest items. Every list is paged by ``limit`` and an opaque ``cursor``
(``next_cursor`` of the page before; null on the last page)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from genre_agent.catalog.items import Item
from genre_agent.http.errors import ItemId, UserId, errors
from genre_agent.http.schemas import (
    CountedItem,
    DatedItem,
    FeedbackOut,
    FeedbackPage,
    InteractionOut,
    InteractionsPage,
    ItemsPage,
    LatestPage,
    PageQuery,
    PopularPage,
    SessionOut,
    SessionsPage,
    SessionsQuery,
    UserOut,
)
from genre_agent.http.service import Service
from genre_agent.http.views import decode_cursor, encode_cursor, request_id


def _more(rows: list[Any], limit: int) -> tuple[list[Any], bool]:
    """Rows fetched one past ``limit``: the page, and whether another page follows."""
    return rows[:limit], len(rows) > limit


def _ranked_page(
    kind: str, order: list[tuple[Any, str]], params: PageQuery
) -> tuple[list[tuple[Any, str]], str | None]:
    """A page of ``order`` (already sorted) by offset; the cursor holds the offset."""
    start = decode_cursor(kind, params.cursor, 0)
    page = order[start : start + params.limit]
    more = start + params.limit < len(order)
    return page, encode_cursor(kind, start + params.limit) if more else None


def build_reads(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1")

    def catalog() -> dict[str, Item]:
        return service.rec.sources.catalog()

    newest: dict[str, Any] = {}  # GET /v1/latest's order, for the catalog it was read from

    @router.get("/items/{item_id}", response_model=Item, responses=errors(404, 422, 503))
    def get_item(item_id: ItemId) -> Item:
        """One catalog item."""
        found = service.rec.sources.lookup([item_id])
        if item_id not in found:
            raise HTTPException(404, f"item {item_id!r} is not in the index")
        return found[item_id]

    @router.get("/items", response_model=ItemsPage, responses=errors(422, 503))
    def list_items(request: Request, params: Annotated[PageQuery, Query()]) -> ItemsPage:
        """Catalog items in id order."""
        after = decode_cursor("items", params.cursor, "")
        items = catalog()
        rest = sorted(i for i in items if i > after)
        ids = rest[: params.limit]
        nxt = encode_cursor("items", ids[-1]) if len(rest) > params.limit else None
        return ItemsPage(
            request_id=request_id(request), next_cursor=nxt, items=[items[i] for i in ids]
        )

    @router.get("/popular", response_model=PopularPage, responses=errors(422, 503))
    def popular(request: Request, params: Annotated[PageQuery, Query()]) -> PopularPage:
        """Catalog items by how many interactions and feedback events they have (live)."""
        items = catalog()
        counts = service.rec.interactions.item_counts()
        order = sorted(((-n, i) for i, n in counts.items() if i in items))
        page, nxt = _ranked_page("popular", order, params)
        return PopularPage(
            request_id=request_id(request),
            next_cursor=nxt,
            items=[CountedItem(item=items[i], count=-n) for n, i in page],
        )

    @router.get("/latest", response_model=LatestPage, responses=errors(422, 503))
    def latest(request: Request, params: Annotated[PageQuery, Query()]) -> LatestPage:
        """Catalog items by when they were first indexed, newest first."""
        items = catalog()
        if newest.get("catalog") is not items:
            # Reading every record's time from Chroma takes seconds on 10k items: once per
            # catalog (the sources' catalog is a new object after any index or delete).
            added = service.rec.store.added_times()
            newest["order"] = sorted((-t, i) for i, t in added.items() if i in items)
            newest["catalog"] = items
        page, nxt = _ranked_page("latest", newest["order"], params)
        return LatestPage(
            request_id=request_id(request),
            next_cursor=nxt,
            items=[DatedItem(item=items[i], added=-t) for t, i in page],
        )

    def known(user_id: str) -> int:
        n = service.rec.interactions.user_count(user_id)
        if n == 0:
            raise HTTPException(404, f"user {user_id!r} has no stored interactions or feedback")
        return n

    @router.get("/users/{user_id}", response_model=UserOut, responses=errors(404, 422, 503))
    def get_user(request: Request, user_id: UserId) -> UserOut:
        """What is stored about a user: how many interactions and feedback events (list
        them with /interactions and /feedback)."""
        n = known(user_id)
        return UserOut(
            request_id=request_id(request),
            user_id=user_id,
            interactions=n,
            feedback_events=service.rec.interactions.user_event_count(user_id),
        )

    @router.get(
        "/users/{user_id}/interactions",
        response_model=InteractionsPage,
        responses=errors(404, 422, 503),
    )
    def user_interactions(
        request: Request, user_id: UserId, params: Annotated[PageQuery, Query()]
    ) -> InteractionsPage:
        """The user's history as recommendations read it (loaded interactions and
        feedback events), oldest first."""
        known(user_id)
        offset = decode_cursor("interactions", params.cursor, 0)
        rows, more = _more(
            service.rec.interactions.interactions_page(user_id, offset, params.limit + 1),
            params.limit,
        )
        return InteractionsPage(
            request_id=request_id(request),
            user_id=user_id,
            next_cursor=encode_cursor("interactions", offset + len(rows)) if more else None,
            items=[
                InteractionOut(item_id=i, timestamp=t, rating=r, origin=o)  # type: ignore[arg-type]
                for i, t, r, o in rows
            ],
        )

    @router.get(
        "/users/{user_id}/feedback", response_model=FeedbackPage, responses=errors(404, 422, 503)
    )
    def user_feedback(
        request: Request, user_id: UserId, params: Annotated[PageQuery, Query()]
    ) -> FeedbackPage:
        """The user's feedback events as stored, with the request id each one named."""
        known(user_id)
        after = decode_cursor("feedback", params.cursor, 0)
        rows, more = _more(
            service.rec.interactions.feedback_page(user_id, after, params.limit + 1), params.limit
        )
        return FeedbackPage(
            request_id=request_id(request),
            user_id=user_id,
            next_cursor=encode_cursor("feedback", rows[-1][0]) if more else None,
            items=[
                FeedbackOut(
                    event_id=e.event_id,
                    item_id=e.item_id,
                    type=e.type,
                    value=e.value,
                    timestamp=e.timestamp,
                    rating=e.rating,
                    request_id=e.request_id,
                    recorded=recorded,
                )
                for _, e, recorded in rows
            ],
        )

    @router.get("/sessions", response_model=SessionsPage, responses=errors(422, 503))
    def list_sessions(request: Request, params: Annotated[SessionsQuery, Query()]) -> SessionsPage:
        """Chat sessions, least recently updated first (one user's with ?user_id=)."""
        offset = decode_cursor("sessions", params.cursor, 0)
        rows, more = _more(
            service.sessions().page(params.user_id, offset, params.limit + 1), params.limit
        )
        return SessionsPage(
            request_id=request_id(request),
            next_cursor=encode_cursor("sessions", offset + len(rows)) if more else None,
            items=[SessionOut(id=s, user_id=u, updated=t) for s, u, t in rows],
        )

    return router
