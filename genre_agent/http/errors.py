"""Error answers of the HTTP API: which status a failure gets, what each route declares in
openapi.json, and the path parameters' bounds (shared by every router)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from genre_agent.errors import GenreError, ModelError, StoreError
from genre_agent.http.schemas import ErrorOut
from genre_agent.service.fit import FitError

ItemId = Annotated[str, Path(min_length=1, max_length=64, description="An item id.")]
UserId = Annotated[str, Path(min_length=1, max_length=200, description="A user id.")]
# Session ids are 12 hex characters when the service makes them; a longer one is refused
# before any lookup.
SessionId = Annotated[
    str, Path(min_length=1, max_length=64, description="A chat session id (POST /v1/sessions).")
]

WHY: dict[int, str] = {
    400: "The Host header is not one of service.allowed_hosts.",
    401: "service.api_key is set and the request has no key or a wrong one.",
    404: "The user, item or session named in the path or body is unknown.",
    413: "The body is over service.max_body_bytes.",
    422: "A field is invalid; `detail` and `message` name it.",
    503: "A store, a fitted model or the engine cannot serve (see /health/ready).",
}
# Every route can answer these: the Host check and the key come before any route.
ALWAYS = (400, 401)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry declaring the error statuses a route returns."""
    return {c: {"model": ErrorOut, "description": WHY[c]} for c in sorted({*ALWAYS, *codes})}


def genre_status(exc: GenreError) -> int:
    """503 when the service cannot serve (a store, a model, a missing fit), else 422."""
    return 503 if isinstance(exc, (StoreError, ModelError, FitError)) else 422
