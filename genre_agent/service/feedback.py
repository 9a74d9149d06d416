"""Feedback events: validated, stored idempotently by event id, and forgetting a user.

An event is one thing a user did with an item. Every event is kept (a user who views an item
three times has three events), and the user's history and the popularity counts see each
one (``InteractionStore.all_interactions``). What an event means for "liked":

================  ====================  ============================================
``type``          stored rating         liked? (``retrieval.min_liked_rating``)
================  ====================  ============================================
view, click,      None                  yes: implicit positive feedback, like a
like, purchase                          ratings file row without a rating
rating            ``value`` (required)  if ``value >= min_liked_rating``
dislike           0.0 (the lowest)      no (for any ``min_liked_rating > 0``)
================  ====================  ============================================

``value`` is kept as sent for every type (a purchase amount, a watch fraction) but only a
``rating`` event reads it. Delivery is at least once (HTTP retries, Redis redelivery after
a crash); the event id makes that safe: an id stored before is a duplicate, not stored
again, across batches, processes and restarts (the id is the table's primary key).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from genre_agent.config import Config
from genre_agent.errors import GenreError, shorten
from genre_agent.storage.backends import exists as stores_exist
from genre_agent.storage.backends import open_exposures, open_profiles
from genre_agent.storage.base import InteractionBackend
from genre_agent.storage.cache import RecommendationCache
from genre_agent.storage.interactions import FeedbackRow, Timestamp

EventType = Literal["view", "click", "like", "dislike", "rating", "purchase"]
EVENT_TYPES: tuple[str, ...] = ("view", "click", "like", "dislike", "rating", "purchase")
# The rating a dislike is stored with: below any sensible retrieval.min_liked_rating, so a
# dislike never counts as liked, and not negative, so no fitter gets a negative weight.
DISLIKE_RATING = 0.0
MAX_ID_CHARS = 512


class FeedbackEvent(BaseModel):
    """One feedback event, as sent over HTTP (POST /v1/feedback) or a Redis Stream.

    Ids may be sent as JSON numbers (MovieLens ids are); they are stored as strings.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)

    event_id: str = Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="Unique per event: a repeat is a duplicate.",
    )
    user_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Who.")
    item_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Which item.")
    type: EventType = Field(description="What the user did.")
    # The rating for type="rating" (required there); kept as sent for the other types.
    value: float | None = Field(
        None,
        allow_inf_nan=False,
        validate_default=True,
        description="The rating of a rating event (required there); kept as sent otherwise.",
    )
    # Unix seconds or RFC 3339 text; None = when it is recorded.
    timestamp: Timestamp | None = Field(
        None,
        description="When: Unix seconds, or RFC 3339 text with a zone; absent: when stored.",
    )
    # The recommendation response (its request_id) that showed the item, if any.
    request_id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="The request_id of the recommendation that showed the item (attribution).",
    )

    @field_validator("value")
    @classmethod
    def _rating_has_value(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None and info.data.get("type") == "rating":
            raise ValueError("a 'rating' event needs a value (the rating)")
        return value

    def rating(self) -> float | None:
        """What readers of the history see (see the module's table)."""
        if self.type == "rating":
            return self.value
        if self.type == "dislike":
            return DISLIKE_RATING
        return None


class FeedbackError(GenreError):
    """An event failed validation; the message names each bad field and its value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("bad feedback event: " + "; ".join(problems))


def describe(exc: ValidationError) -> list[str]:
    """One line per problem: ``field 'x': reason (value ...)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<event>"
        shown = ""
        value = err.get("input")
        if err["type"] != "missing" and value is not None and not isinstance(value, dict):
            shown = f" (value {shorten(repr(value))})"
        lines.append(f"field {loc!r}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return lines


def parse_event(data: Mapping[str, Any]) -> FeedbackEvent:
    """Validate one event; a FeedbackError names every bad field."""
    try:
        return FeedbackEvent.model_validate(data)
    except ValidationError as exc:
        raise FeedbackError(describe(exc)) from None


@dataclass(frozen=True)
class FeedbackResult:
    """What one batch did: ``stored`` new events, and the ids of ``duplicates`` (ids stored
    before, in this batch or any earlier one, or deleted by forget_user)."""

    stored: int
    duplicates: list[str] = field(default_factory=list)


def record_feedback(
    interactions: InteractionBackend,
    events: Sequence[FeedbackEvent],
    cache: RecommendationCache | None = None,
) -> FeedbackResult:
    """Store ``events`` in one transaction, committed before this returns (so a caller may
    acknowledge them); an event id seen before is counted as a duplicate, not stored. Then
    each user's cached answers are deleted (``cache``): their history changed."""
    now = time.time()
    rows = [
        FeedbackRow(
            event_id=e.event_id,
            user_id=e.user_id,
            item_id=e.item_id,
            type=e.type,
            value=e.value,
            timestamp=now if e.timestamp is None else e.timestamp,
            rating=e.rating(),
            request_id=e.request_id,
        )
        for e in events
    ]
    duplicates = interactions.add_events(rows) if rows else []
    if cache is not None:
        for user_id in dict.fromkeys(e.user_id for e in events):
            cache.invalidate_user(user_id)
    return FeedbackResult(stored=len(rows) - len(duplicates), duplicates=duplicates)


@dataclass(frozen=True)
class ForgetReport:
    """What forget_user deleted for one user."""

    user_id: str
    interactions: int
    events: int
    profiles: int
    forgotten_items: int
    chat_sessions: int
    # Exposures of online experiments (what the user was shown).
    exposures: int = 0

    def total(self) -> int:
        return (
            self.interactions
            + self.events
            + self.profiles
            + self.forgotten_items
            + self.chat_sessions
            + self.exposures
        )


def forget_user(config: Config, interactions: InteractionBackend, user_id: str) -> ForgetReport:
    """Delete everything stored about ``user_id``: interactions, feedback events (their ids
    are kept, without the user, so a redelivered event is not stored again), the profile,
    the list of items the user asked to forget, chat sessions and the exposures of online
    experiments. Stores that do not
    exist yet are not created. Other users' data is untouched."""
    from genre_agent.service.chat import SessionStore

    n_rows, n_events = interactions.delete_user(user_id)
    exposures = open_exposures(config, interactions).delete_user(user_id)
    profiles = forgotten = sessions = 0
    if stores_exist(config, "profiles"):
        pstore = open_profiles(config)
        try:
            profiles = int(pstore.delete(user_id))
            forgotten = pstore.drop_forgotten(user_id)
        finally:
            pstore.close()
    if stores_exist(config, "sessions"):
        sstore = SessionStore.from_config(config)
        try:
            sessions = sstore.delete_user(user_id)
        finally:
            sstore.close()
    return ForgetReport(user_id, n_rows, n_events, profiles, forgotten, sessions, exposures)
