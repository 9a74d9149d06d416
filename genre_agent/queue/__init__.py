"""Feedback events from a Redis Stream (``genre consume``); see consumer.py."""

from genre_agent.queue.consumer import (
    Consumer,
    ConsumeStats,
    MalformedEvent,
    QueueError,
    QueueStatus,
    connect,
    parse_message,
    queue_status,
    shown_url,
)

__all__ = [
    "ConsumeStats",
    "Consumer",
    "MalformedEvent",
    "QueueError",
    "QueueStatus",
    "connect",
    "parse_message",
    "queue_status",
    "shown_url",
]
