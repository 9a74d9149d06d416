"""LLM failures as one-line GenreErrors."""

from __future__ import annotations

from genre_agent.errors import ModelError


class LLMUnavailable(ModelError):
    """The LLM engine or server gave no answer (refused, timed out, HTTP error, crashed).

    The message is one line naming the engine, where it runs and the cause.
    """


class LLMTimeout(LLMUnavailable):
    """No answer within the configured time."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` with whitespace runs collapsed to one space, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
