"""Parsing stream messages into feedback events (no Redis needed)."""

from __future__ import annotations

import json

import pytest

from genre_agent.queue import MalformedEvent, parse_message, shown_url


def test_fields_and_json_forms_parse_alike() -> None:
    flat = parse_message(
        {
            b"event_id": b"e1",
            b"user_id": b"7",
            b"item_id": b"42",
            b"type": b"rating",
            b"value": b"4.5",
            b"timestamp": b"100",
        }
    )
    as_json = parse_message(
        {
            "event": json.dumps(
                {
                    "event_id": "e1",
                    "user_id": 7,
                    "item_id": 42,
                    "type": "rating",
                    "value": 4.5,
                    "timestamp": 100,
                }
            )
        }
    )
    assert flat == as_json
    assert flat.value == 4.5 and flat.timestamp == 100.0
    # Empty value / timestamp fields mean none.
    e = parse_message(
        {
            "event_id": "e",
            "user_id": "u",
            "item_id": "i",
            "type": "view",
            "value": "",
            "timestamp": "",
        }
    )
    assert e.value is None and e.timestamp is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event": "{not json"}, "field 'event': bad JSON"),
        ({"event": "[1, 2]"}, "expected a JSON object, got list"),
        ({"event": "{}", "user_id": "u"}, "must be the only field"),
        ({"event_id": "e", "user_id": "u", "type": "view"}, "field 'item_id': Field required"),
        ({"event_id": "e", "user_id": "u", "item_id": "i", "type": "wink"}, "field 'type'"),
        (
            {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "value": "x"},
            "field 'value'",
        ),
        (
            {"event_id": "e", "user_id": "u", "item_id": "i", "type": "view", "colour": "red"},
            "field 'colour': Extra inputs are not permitted",
        ),
        ({b"event_id": b"\xff", b"user_id": b"u", b"item_id": b"i", b"type": b"view"}, "not UTF-8"),
    ],
)
def test_malformed_messages_name_the_reason(fields: dict, reason: str) -> None:
    with pytest.raises(MalformedEvent) as info:
        parse_message(fields)
    assert reason in info.value.reason


def test_password_is_not_shown() -> None:
    assert shown_url("redis://:s3cret@host:6380/0") == "redis://:***@host:6380/0"
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_consume_with_no_redis_names_the_url_and_exits_2(tmp_path, capsys) -> None:
    from servers import free_port

    from genre_agent.cli.main import run

    url = f"redis://:pw@127.0.0.1:{free_port()}/0"  # nothing listens there
    code = run(
        [
            "consume",
            "-s",
            f"queue.redis_url={url}",
            "-s",
            f"store.interactions_path={tmp_path / 'i.sqlite'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "queue.redis_url = 'redis://:***@127.0.0.1:" in err and "cannot connect" in err
    assert "pw" not in err
    assert not (tmp_path / "i.sqlite").exists()  # nothing opened before Redis answered


def test_consume_refuses_the_memory_store(capsys) -> None:
    from genre_agent.cli.main import run

    assert run(["consume", "-s", "store.kind=memory"]) == 2
    assert "store.kind = 'memory' keeps nothing" in capsys.readouterr().err
