"""Exceptions with messages meant for users."""

from __future__ import annotations

from dataclasses import dataclass

# Values longer than this are cut in messages: a 5 MB field must not be echoed to a terminal.
SHOWN_VALUE_CHARS = 80


def shorten(value: str, limit: int = SHOWN_VALUE_CHARS) -> str:
    """``value`` cut to ``limit`` characters, with an ellipsis and the original length."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({len(value)} chars)"


class GenreError(Exception):
    """Base class for errors the CLI prints without a traceback."""


class ConfigError(GenreError):
    """A configuration file, key or value is wrong."""


class ModelError(GenreError):
    """A model could not be found, verified, converted or loaded."""


class StoreError(GenreError):
    """The vector store could not be reached or used."""


@dataclass(frozen=True)
class RowProblem:
    """One bad row in a catalog file."""

    file: str
    line: int
    field: str
    reason: str
    value: str = ""
    # Length of the original value when ``value`` was cut to SHOWN_VALUE_CHARS (else 0).
    value_chars: int = 0

    def __post_init__(self) -> None:
        # Keep only what a message shows; repr() in __str__ escapes control characters.
        object.__setattr__(self, "field", shorten(self.field))
        if len(self.value) > SHOWN_VALUE_CHARS:
            object.__setattr__(self, "value_chars", len(self.value))
            object.__setattr__(self, "value", self.value[:SHOWN_VALUE_CHARS] + "…")

    def __str__(self) -> str:
        shown = f" (value {self.value!r})" if self.value else ""
        if self.value_chars:
            shown = f" (value {self.value!r}, {self.value_chars} chars)"
        return f"{self.file}:{self.line}: field {self.field!r}: {self.reason}{shown}"


class CatalogError(GenreError):
    """A catalog file has bad rows; nothing from the file was indexed."""

    def __init__(self, problems: list[RowProblem], limit: int = 20, source: str = "file") -> None:
        """``source`` names what the rows came in: "file", or "request" over HTTP."""
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:limit])
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        super().__init__(
            f"{len(problems)} bad row(s); nothing from this {source} was indexed:\n{shown}{more}"
        )


class RankingValidationError(GenreError):
    """The LLM's answer failed validation even after constrained repair."""


def check_unicode(text: str) -> str:
    """``text`` if it can be stored as UTF-8; a ValueError (which names no character that
    cannot be printed) for a lone surrogate, e.g. from JSON "\\udfff"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"not valid Unicode: a lone surrogate at position {exc.start} "
            f"(U+{ord(text[exc.start]):04X})"
        ) from None
    return text
