"""Feedback events: idempotent by event id, repeats kept, seen by history, forget_user."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from genre_agent.catalog.items import Item
from genre_agent.config import Config
from genre_agent.service.chat import SessionState, SessionStore
from genre_agent.service.feedback import (
    FeedbackError,
    FeedbackEvent,
    forget_user,
    parse_event,
    record_feedback,
)
from genre_agent.service.requests import resolve_history
from genre_agent.storage.interactions import Interaction, InteractionStore
from genre_agent.storage.profiles import ProfileRecord, ProfileStore, UserProfile


def ev(
    eid: str, user: str = "u1", item: str = "i1", type_: str = "view", **kw: object
) -> FeedbackEvent:
    return FeedbackEvent.model_validate(
        {"event_id": eid, "user_id": user, "item_id": item, "type": type_, **kw}
    )


def test_idempotent_within_and_across_batches_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    store = InteractionStore(path)
    first = record_feedback(
        store, [ev("a", timestamp=1), ev("b", timestamp=2), ev("a", timestamp=3)]
    )
    assert (first.stored, first.duplicates) == (2, ["a"])
    second = record_feedback(store, [ev("b"), ev("c", timestamp=4)])
    assert (second.stored, second.duplicates) == (1, ["b"])
    store.close()
    reopened = InteractionStore(path)
    third = record_feedback(reopened, [ev("a"), ev("c"), ev("d", timestamp=5)])
    assert (third.stored, sorted(third.duplicates)) == (1, ["a", "c"])
    assert reopened.event_count() == 4
    assert reopened.event_counts(["a", "b", "c", "d", "zz"]) == {
        "a": 1,
        "b": 1,
        "c": 1,
        "d": 1,
        "zz": 0,
    }
    # The first write of an id wins: "a" keeps timestamp 1, not the duplicate's 3.
    assert [r.timestamp for r in reopened.history("u1")] == [1.0, 2.0, 4.0, 5.0]
    reopened.close()


def test_two_processes_writing_the_same_ids_store_each_once(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    InteractionStore(path).close()
    code = textwrap.dedent(
        f"""
        import sys
        from genre_agent.service.feedback import FeedbackEvent, record_feedback
        from genre_agent.storage.interactions import InteractionStore
        store = InteractionStore({str(path)!r})
        stored = 0
        for start in range(0, 300, 30):
            batch = [FeedbackEvent(event_id=f"e{{i}}", user_id=f"u{{i % 7}}", item_id="x",
                                   type="click") for i in range(start, start + 30)]
            stored += record_feedback(store, batch).stored
        print(stored)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(o) for o in outs) == 300  # each id stored by exactly one process
    store = InteractionStore(path)
    assert store.event_count() == 300
    store.close()


def test_repeats_kept_and_seen_by_history_and_counts() -> None:
    store = InteractionStore(":memory:")
    store.add([Interaction("u1", "old", 0.5, 4.0), Interaction("u1", "old", 0.6, 5.0)])
    record_feedback(
        store,
        [
            ev("v1", item="m", timestamp=10),
            ev("v2", item="m", timestamp=11),
            ev("v3", item="m", timestamp=12, type_="purchase", value=9.99),
            ev("v4", user="u2", item="m", timestamp=1),
        ],
    )
    hist = store.history("u1")
    # The loaded row still replaces on re-add; every event is its own row.
    assert [(r.item_id, r.timestamp) for r in hist] == [
        ("old", 0.6),
        ("m", 10.0),
        ("m", 11.0),
        ("m", 12.0),
    ]
    assert store.item_counts() == {"old": 1, "m": 4}
    assert store.count() == 5
    assert list(store.users()) == ["u1", "u2"]
    before = store.fingerprint()
    record_feedback(store, [ev("v5", item="m", timestamp=13)])
    assert store.fingerprint() != before  # fitted-model provenance sees new events


def test_dislikes_and_low_ratings_are_not_liked_latest_event_decides() -> None:
    cfg = Config()  # retrieval.min_liked_rating = 3.5
    store = InteractionStore(":memory:")
    record_feedback(
        store,
        [
            ev("1", item="a", type_="like", timestamp=1),
            ev("2", item="b", type_="dislike", timestamp=2),
            ev("3", item="c", type_="rating", value=2.0, timestamp=3),
            ev("4", item="d", type_="rating", value=4.5, timestamp=4),
            ev("5", item="e", type_="view", timestamp=5),
            ev("6", item="e", type_="dislike", timestamp=6),  # e: viewed, then disliked
            ev("7", item="a", type_="click", timestamp=7),  # a: repeat, once in the lists
        ],
    )

    def lookup(ids: list[str]) -> dict[str, Item]:
        return {i: Item(id=i, title=f"T{i}") for i in ids}

    hist = resolve_history(cfg, store.history("u1"), lookup)
    assert [i.id for i in hist.liked] == ["d", "a"]
    assert [i.id for i in hist.disliked] == ["b", "c", "e"]
    assert hist.exclude == frozenset("abcde")


def test_validation_errors_name_the_field() -> None:
    with pytest.raises(FeedbackError, match=r"field 'value'.*'rating' event needs a value"):
        parse_event({"event_id": "e", "user_id": "u", "item_id": "i", "type": "rating"})
    with pytest.raises(FeedbackError) as info:
        parse_event(
            {
                "event_id": "",
                "user_id": "u",
                "item_id": "i",
                "type": "stare",
                "value": "nan",
                "timestamp": -1,
                "colour": "red",
            }
        )
    text = str(info.value)
    for name in ("event_id", "type", "value", "timestamp", "colour"):
        assert f"field {name!r}" in text
    assert "'stare'" in text
    with pytest.raises(FeedbackError, match="field 'item_id': Field required"):
        parse_event({"event_id": "e", "user_id": "u", "type": "view"})
    # Numeric ids (MovieLens) are stored as strings; numeric strings are numbers.
    e = parse_event({"event_id": 7, "user_id": 1, "item_id": 2, "type": "rating", "value": "4"})
    assert (e.event_id, e.user_id, e.item_id, e.value) == ("7", "1", "2", 4.0)
    with pytest.raises(ValidationError):  # frozen
        e.value = 1.0  # type: ignore[misc]


def test_forget_user_removes_everything_of_that_user_only(tmp_path: Path) -> None:
    cfg = Config.model_validate(
        {
            "profile": {"path": str(tmp_path / "profiles.sqlite")},
            "chat": {"sessions_path": str(tmp_path / "chat.sqlite")},
        }
    )
    store = InteractionStore(tmp_path / "i.sqlite")
    store.add([Interaction("u1", "a", 1.0, 5.0), Interaction("u2", "a", 1.0, 5.0)])
    record_feedback(store, [ev("e1"), ev("e2"), ev("e3", user="u2")])
    profiles = ProfileStore(cfg.profile.path)
    for user in ("u1", "u2"):
        profiles.put(
            ProfileRecord(
                user_id=user,
                profile=UserProfile(summary=f"{user} likes films"),
                template_sha256="t",
                model_id="m",
                history_sha256="h",
            )
        )
        profiles.forget(user, "a")
    profiles.close()
    sessions = SessionStore(cfg.chat.sessions_path)
    for sid, user in (("s1", "u1"), ("s2", "u1"), ("s3", "u2")):
        sessions.save(SessionState(id=sid, user_id=user))
    sessions.close()

    report = forget_user(cfg, store, "u1")
    assert (
        report.interactions,
        report.events,
        report.profiles,
        report.forgotten_items,
        report.chat_sessions,
    ) == (1, 2, 1, 1, 2)
    assert store.history("u1") == []
    assert len(store.history("u2")) == 2
    profiles = ProfileStore(cfg.profile.path)
    assert profiles.get("u1") is None and profiles.forgotten("u1") == set()
    assert profiles.get("u2") is not None and profiles.forgotten("u2") == {"a"}
    profiles.close()
    sessions = SessionStore(cfg.chat.sessions_path)
    assert [(s, u) for s, u, _ in sessions.list()] == [("s3", "u2")]
    sessions.close()
    # A redelivered event of the forgotten user does not bring it back.
    again = record_feedback(store, [ev("e1"), ev("e4")])
    assert (again.stored, again.duplicates) == (1, ["e1"])
    assert [r.item_id for r in store.history("u1")] == ["i1"]
    assert forget_user(cfg, store, "u1").events == 1
    store.close()


def test_forget_user_creates_no_store_files(tmp_path: Path) -> None:
    cfg = Config.model_validate(
        {
            "profile": {"path": str(tmp_path / "p.sqlite")},
            "chat": {"sessions_path": str(tmp_path / "c.sqlite")},
        }
    )
    report = forget_user(cfg, InteractionStore(":memory:"), "nobody")
    assert report.total() == 0
    assert not (tmp_path / "p.sqlite").exists() and not (tmp_path / "c.sqlite").exists()


def test_item_counts_follow_writes_from_another_connection(tmp_path: Path) -> None:
    """item_counts is cached and updated from new events only; version() sees every
    write (another process's too) and every delete."""
    path = tmp_path / "i.sqlite"
    reader, writer = InteractionStore(path), InteractionStore(path)
    writer.add([Interaction("u1", "a", 1.0, 5.0), Interaction("u2", "a", 1.0, 5.0)])
    assert reader.item_counts() == {"a": 2}
    v0 = reader.version()
    record_feedback(writer, [ev("1", item="a"), ev("2", item="b"), ev("3", user="u2", item="b")])
    assert reader.version() != v0
    assert reader.item_counts() == {"a": 3, "b": 2}
    record_feedback(writer, [ev("2", item="b"), ev("4", item="c")])  # one duplicate
    assert reader.item_counts() == {"a": 3, "b": 2, "c": 1}
    writer.add([Interaction("u1", "a", 2.0, 4.0)])  # replaces u1's row: same count
    assert reader.item_counts() == {"a": 3, "b": 2, "c": 1}
    v1 = reader.version()
    writer.delete_user("u2")
    assert reader.version() != v1
    assert reader.item_counts() == {"a": 2, "b": 1, "c": 1}
    assert reader.item_counts() == {
        item: sum(1 for r in reader.all() if r.item_id == item) for item in "abc"
    }
    reader.close()
    writer.close()
