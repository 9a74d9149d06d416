"""The chat benchmark's cases: expected wishes per turn, and their JSONL files (re-exported
by ``genre_eval.chat_bench``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.catalog.items import Item
from genre_agent.errors import GenreError

SLOTS = ("genres_include", "genres_exclude", "year_min", "year_max", "references", "positions")
RELATIVE = ("older_than_last", "newer_than_last")
# The benchmark's definition of "violent" (a follow-up "less violent" excludes all three).
VIOLENT = ("Action", "Horror", "War")


class Expect(BaseModel):
    """The wishes a session holds after one turn (positions: this turn's, e.g. "exclude:1")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    genres_include: list[str] = Field(default_factory=list)
    genres_exclude: list[str] = Field(default_factory=list)
    year_min: int | str | None = None
    year_max: int | str | None = None
    references: list[str] = Field(default_factory=list)
    positions: list[str] = Field(default_factory=list)


class CaseTurn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1, max_length=500)
    expect: Expect


class Case(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    part: str = "template"  # "template" or "hand"
    kind: str = ""
    turns: list[CaseTurn] = Field(min_length=1)


def load_cases(path: str | Path, catalog: Mapping[str, Item] | None = None) -> list[Case]:
    """Cases from a JSONL file; with ``catalog``, every genre, reference and year is checked
    against it (a line naming an unknown id or genre is an error naming file and line)."""
    path = Path(path)
    cases = []
    genres = (
        {g for it in catalog.values() for g in str(it.metadata.get("genres", "")).split("|") if g}
        if catalog is not None
        else None
    )
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = Case.model_validate_json(line)
        except ValueError as exc:
            raise GenreError(f"{path}:{n}: not a benchmark case: {str(exc)[:300]}") from exc
        if catalog is not None and genres is not None:
            for t in case.turns:
                bad = [r for r in t.expect.references if r not in catalog]
                bad += [
                    g
                    for g in [*t.expect.genres_include, *t.expect.genres_exclude]
                    if g not in genres
                ]
                for y in (t.expect.year_min, t.expect.year_max):
                    if isinstance(y, str) and y not in RELATIVE:
                        bad.append(y)
                if bad:
                    raise GenreError(f"{path}:{n}: case {case.id}: unknown ids/genres/years {bad}")
        cases.append(case)
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise GenreError(f"{path}: duplicate case ids")
    return cases


def write_cases(cases: Iterable[Case], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(c.model_dump_json() + "\n" for c in cases), encoding="utf-8")
