"""Exceptions with messages meant for users."""

from __future__ import annotations

from dataclasses import dataclass


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

    def __str__(self) -> str:
        shown = f" (value {self.value!r})" if self.value else ""
        return f"{self.file}:{self.line}: field {self.field!r}: {self.reason}{shown}"


class CatalogError(GenreError):
    """A catalog file has bad rows; nothing from the file was indexed."""

    def __init__(self, problems: list[RowProblem], limit: int = 20) -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:limit])
        more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
        super().__init__(
            f"{len(problems)} bad row(s); nothing from this file was indexed:\n{shown}{more}"
        )


class RankingValidationError(GenreError):
    """The LLM's answer failed validation even after constrained repair."""
