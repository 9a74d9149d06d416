"""Chat intents: the schema of what one message asks for, its constrained-generation regex,
its re-validation, and the Chroma ``where`` filter it becomes (moved from
genre_agent.service.chat, which re-exports every name)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genre_agent.catalog.items import genre_key
from genre_agent.config import ChatConfig
from genre_agent.errors import GenreError
from genre_agent.service.normalise import Reading


class IntentError(GenreError):
    """The LLM's intent failed validation."""


class Intent(BaseModel):
    """What one user message asks for (positions refer to the last reply's picks, 1-based)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: str = Field("", max_length=1000)
    year_min: int | None = Field(None, ge=1800, le=2100)
    year_max: int | None = Field(None, ge=1800, le=2100)
    genres_include: list[str] = Field(default_factory=list, max_length=10)
    genres_exclude: list[str] = Field(default_factory=list, max_length=10)
    more_like: list[int] = Field(default_factory=list, max_length=50)
    exclude_picks: list[int] = Field(default_factory=list, max_length=50)
    repeat_ok: bool = False
    reset: bool = False


def _alt(options: Sequence[str]) -> str:
    return "(" + "|".join(o.replace(".", r"\.").replace("+", r"\+") for o in options) + ")"


def _fixed_list(values: Sequence[str | int], more: str, room: int) -> str:
    """A JSON list that starts with ``values`` (literal) and may go on with up to ``room``
    items matching ``more``."""
    lit = ", ".join(json.dumps(v) for v in values).replace("[", r"\[").replace("+", r"\+")
    lit = lit.replace(".", r"\.")
    if room <= 0:
        return r"\[" + lit + r"\]"
    return r"\[" + lit + "(, " + more + "){0," + str(room) + r"}\]"


def intent_regex(cfg: ChatConfig, n_last: int, seed: Reading | None = None) -> str:
    """Regex of an intent answer, keys in schema order.

    ``seed``: what the normaliser already found. Its year bounds, genres and positions are
    written into the regex as literals, so the model can only add to them (the hybrid)."""
    text = r'"[^"\\\n\r\t<>]{0,' + str(cfg.query_chars) + '}"'
    year = r"(null|1[89]\d\d|20\d\d)"
    g = '"' + _alt(cfg.genres) + '"'
    genres = r"\[(" + g + "(, " + g + r"){0,4})?\]"
    if n_last:
        p = _alt([str(i) for i in range(1, n_last + 1)])
        pos = r"\[(" + p + "(, " + p + "){0," + str(n_last - 1) + r"})?\]"
    else:
        pos = r"\[\]"
    year_min = year_max = year
    include = exclude = genres
    more_like = exclude_picks = pos
    if seed is not None:
        if seed.year_min is not None:
            year_min = str(seed.year_min)
        if seed.year_max is not None:
            year_max = str(seed.year_max)
        if seed.genres_include:
            include = _fixed_list(seed.genres_include, g, 5 - len(seed.genres_include))
        if seed.genres_exclude:
            exclude = _fixed_list(seed.genres_exclude, g, 5 - len(seed.genres_exclude))
        if seed.more_like and n_last:
            more_like = _fixed_list(seed.more_like, p, 0)
        if seed.exclude_picks and n_last:
            exclude_picks = _fixed_list(seed.exclude_picks, p, 0)
    boolean = "(true|false)"
    return (
        r'\{"query": '
        + text
        + r', "year_min": '
        + year_min
        + r', "year_max": '
        + year_max
        + r', "genres_include": '
        + include
        + r', "genres_exclude": '
        + exclude
        + r', "more_like": '
        + more_like
        + r', "exclude_picks": '
        + exclude_picks
        + r', "repeat_ok": '
        + boolean
        + r', "reset": '
        + boolean
        + r"\}"
    )


def validate_intent(text: str, cfg: ChatConfig, n_last: int) -> tuple[Intent, list[dict[str, Any]]]:
    """Parse and re-validate an intent; hard failures raise, soft ones are dropped + listed."""
    try:
        intent = Intent.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise IntentError(f"intent failed schema: {str(exc)[:300]}") from exc
    return check_intent(intent, cfg, n_last)


def check_intent(
    intent: Intent, cfg: ChatConfig, n_last: int
) -> tuple[Intent, list[dict[str, Any]]]:
    """Re-validate a parsed intent (from the LLM or the normaliser) against the config."""
    hard: list[str | int] = [
        g for g in [*intent.genres_include, *intent.genres_exclude] if g not in cfg.genres
    ]
    hard += [p for p in [*intent.more_like, *intent.exclude_picks] if not 1 <= p <= n_last]
    if hard:
        raise IntentError(f"intent names unknown genres or positions: {hard}")
    violations: list[dict[str, Any]] = []
    upd: dict[str, Any] = {}
    if intent.year_min and intent.year_max and intent.year_min > intent.year_max:
        violations.append(
            {"reason": "year_min > year_max", "value": [intent.year_min, intent.year_max]}
        )
        upd.update(year_min=None, year_max=None)
    both = set(intent.genres_include) & set(intent.genres_exclude)
    if both:
        violations.append({"reason": "genre both included and excluded", "value": sorted(both)})
        upd["genres_include"] = [g for g in intent.genres_include if g not in both]
        upd["genres_exclude"] = [g for g in intent.genres_exclude if g not in both]
    for name in ("genres_include", "genres_exclude", "more_like", "exclude_picks"):
        values = upd.get(name, getattr(intent, name))
        if len(set(values)) != len(values):
            violations.append({"reason": f"duplicate in {name}", "value": values})
            upd[name] = list(dict.fromkeys(values))
    return (intent.model_copy(update=upd) if upd else intent), violations


def build_where(
    year_min: int | None,
    year_max: int | None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    any_of: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Chroma ``where``: year bounds and genre flags (``genre_x`` is set only when True);
    ``any_of``: at least one of these genres (a named title's genres)."""
    clauses: list[dict[str, Any]] = []
    if year_min is not None:
        clauses.append({"year": {"$gte": year_min}})
    if year_max is not None:
        clauses.append({"year": {"$lte": year_max}})
    clauses += [{genre_key(g): True} for g in include]
    clauses += [{genre_key(g): {"$ne": True}} for g in exclude]
    any_of = [g for g in any_of if g not in exclude]
    if len(any_of) == 1:
        clauses.append({genre_key(any_of[0]): True})
    elif any_of:
        clauses.append({"$or": [{genre_key(g): True} for g in any_of]})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def matches_where(meta: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """Whether item metadata satisfies a ``build_where`` filter (for checks and tests)."""
    if where is None:
        return True
    for clause in where.get("$and", [where]):
        if "$or" in clause:
            if not any(matches_where(meta, c) for c in clause["$or"]):
                return False
            continue
        ((key, cond),) = clause.items()
        val = meta.get(key)
        if not isinstance(cond, dict):
            ok = val == cond
        elif "$gte" in cond:
            ok = val is not None and val >= cond["$gte"]
        elif "$lte" in cond:
            ok = val is not None and val <= cond["$lte"]
        else:
            ok = val != cond["$ne"]
        if not ok:
            return False
    return True
