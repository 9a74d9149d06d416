"""What the HTTP answers look like: a recommendation at the asked trace weight with its
request id and the service's standing notes, and the opaque cursors of list endpoints."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field

from genre_agent.http.schemas import TraceLevel
from genre_agent.types import RankedItem, Recommendation, Trace

# Dropped from the trace unless trace=full: the candidate list (most of a response's bytes)
# and the raw LLM outputs.
HEAVY = ("candidates", "raw_outputs")


def request_id(request: Request) -> str:
    """This request's id (set by RequestIds)."""
    return str(request.state.request_id)


def render(
    rec: Recommendation, level: TraceLevel, rid: str, notes: Sequence[str] = ()
) -> dict[str, Any]:
    """``rec`` as JSON data at trace weight ``level``, with its request id; ``notes`` (the
    service's standing notes, e.g. a stale fitted model) join the trace's own."""
    exclude: Any = {"trace"} if level == "none" else None
    if level == "summary":
        exclude = {"trace": set(HEAVY)}
    # Through pydantic's JSON: NaN and infinite floats become null there (model_dump keeps
    # them, and the response's json.dumps would refuse them).
    data = json.loads(rec.model_dump_json(exclude=exclude))
    out: dict[str, Any] = {"request_id": rid, **data}
    if "trace" in out:
        trace = out.pop("trace")  # last, as before: the items first
        trace["notes"] = [*trace["notes"], *(n for n in notes if n not in trace["notes"])]
        out["trace"] = trace
    return out


# -- cursors --------------------------------------------------------------------------------


def encode_cursor(kind: str, position: Any) -> str:
    """An opaque cursor: where the next page of ``kind`` starts."""
    blob = json.dumps([kind, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None, default: Any) -> Any:
    """The position in ``cursor`` (``default`` when there is none); a 422 naming the cursor
    when it was not made by this endpoint."""
    if not cursor:
        return default
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got, position = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        got, position = None, None
    if got != kind or not isinstance(position, type(default)):
        raise HTTPException(
            422, f"cursor: not a cursor of this list ({kind}); pass the next_cursor it returned"
        )
    return position


# -- documentation models (what the routes answer, for openapi.json) ------------------------


class TraceOut(Trace):
    candidates: list[Any] | None = Field(  # type: ignore[assignment]
        None, description="Every candidate with its score and source ranks (only trace=full)."
    )


class RecommendationOut(BaseModel):
    request_id: str = Field(
        description="This answer's id: name it in feedback events (request_id) to attribute "
        "them to this impression. Also in the X-Request-ID header."
    )
    user_id: str | None = Field(description="The user asked for, if any.")
    items: list[RankedItem] = Field(description="The ranked items, best first.")
    trace: TraceOut | None = Field(
        None, description="How the answer was made (absent with trace=none)."
    )
