"""The "facts" rationale format: the schema fixes the facts, the model writes the sentence.

The answer is ``{"cites": [...], "facts": [...], "rationale": "..."}`` (``extra="forbid"``):

- ``cites``: ids of the supporting liked items, an enum of the evidence ids (one or two;
  none when the item has no supporting history);
- ``facts``: one to three attribute values chosen from the evidence, an enum (the shared
  genres, tags and decades, the item's own genres, year, decade and tags, the request
  words it matches, and "liked by the same people" when item-kNN links a cited item);
- ``rationale``: one sentence in the model's words, 20 to ``max_chars`` characters from a
  plain alphabet (letters, digits, space and ``, . ; : ' ! ? ( ) & -``), starting with a
  capital and ending with a period. The alphabet has no ``< > / @ $ # { } [ ] " \\``, so no
  markup, placeholder, URL scheme, e-mail, price sign or JSON can be written.

Nothing constrains the sentence's shape: the wording is checked afterwards
(``grounding.unsupported_claims``, ``grounding.markup_problems``, ``grounding.grammar_faults``
in ``ranking.rationales``). Titles reach the prompt only as ``grounding.safe_title``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from genre_agent.catalog.items import Item
from genre_agent.ranking.grounding import attributes, is_weak, safe_title, telling
from genre_agent.types import Evidence

# Letters, digits, space and plain punctuation: no markup, quote, slash, at, dollar or hash.
SENTENCE_CHARS = r"[A-Za-z0-9 ,.;:'!?()&-]"
COLIKED = "liked by the same people"
MAX_FACTS = 14


def sentence_pattern(max_chars: int) -> str:
    return rf"^[A-Z]{SENTENCE_CHARS}{{18,{max_chars - 2}}}\.$"


def _value(attribute: str) -> str:
    """ "genre Crime" -> "Crime", "tag heist" -> "heist", "1990s" -> "1990s"."""
    return attribute.split(" ", 1)[1] if attribute.startswith(("genre ", "tag ")) else attribute


def _plain(text: str) -> bool:
    return bool(text) and all(" " <= ch <= "~" and ch not in '"\\' for ch in text)


def _join(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def fact_values(item: Item, evidence: Evidence) -> list[str]:
    """The facts a sentence may use, most telling first: what the cited items share, the
    co-occurrence, the request words, then the item's own genres, tags, year and decade."""
    own = sorted(attributes(item))
    shared = [a for s in evidence.history for a in s.shared if not a[:1].isdigit()]
    values = [_value(a) for a in sorted(shared, key=lambda a: -telling([a]))]
    if any("itemknn" in s.by for s in evidence.history):
        values.append(COLIKED)
    values += [f"asked for {w}" for w in evidence.request]
    values += [_value(a) for a in own if not a[:1].isdigit()]
    year = item.metadata.get("year")
    if isinstance(year, int) and not isinstance(year, bool):
        values += [str(year), f"{year // 10 * 10}s"]
    values += [a for s in evidence.history for a in s.shared if a[:1].isdigit()]
    return [v for v in dict.fromkeys(values) if _plain(v)][:MAX_FACTS]


def prompt_context(
    item: Item, evidence: Evidence, query: str | None, profile: str | None = None
) -> dict[str, Any]:
    """What prompts/explain_facts.*.j2 receive (see fact_values)."""
    genres = [g for g in str(item.metadata.get("genres", "")).split("|") if g]
    tags = [_value(a) for a in sorted(attributes(item)) if a.startswith("tag ")]
    year = item.metadata.get("year")
    about = []
    if genres:
        about.append(("genre " if len(genres) == 1 else "genres ") + _join(genres))
    if isinstance(year, int) and not isinstance(year, bool):
        about.append(f"from {year}, the {year // 10 * 10}s")
    if tags:
        about.append(("tag " if len(tags) == 1 else "tags ") + _join(tags[:4]))
    support = [
        {
            "id": s.id,
            "title": safe_title(s.title),
            "shares": _join([_value(a) for a in sorted(s.shared, key=lambda a: -telling([a]))])
            if s.shared
            else "",
            "coliked": "itemknn" in s.by,
        }
        for s in evidence.history
    ]
    common: list[str] = []
    if len(evidence.history) >= 2:
        both = set(evidence.history[0].shared) & set(evidence.history[1].shared)
        common = [_value(a) for a in sorted(both) if not a[:1].isdigit()]
    weak = bool(evidence.history) and all(is_weak(s.shared) for s in evidence.history)
    coliked = next((s["title"] for s in support if s["coliked"]), "")
    return {
        "item": {"title": safe_title(item.title), "facts": "; ".join(about)},
        "support": support,
        "common": _join(common) if common else "",
        "weak": weak,
        "coliked_title": coliked,
        "query": query,
        "profile": profile,
        "request": list(evidence.request),
        "facts": fact_values(item, evidence),
    }


def answer_model(ids: Sequence[str], facts: Sequence[str], max_chars: int) -> type[BaseModel]:
    """The answer schema for these evidence ids and fact values (module doc)."""
    cites: Any
    if ids:
        cites = (list[Literal[tuple(ids)]], Field(min_length=1, max_length=min(2, len(ids))))  # type: ignore[valid-type,misc]
    else:
        cites = (list[str], Field(max_length=0))
    fact: Any = (
        (list[Literal[tuple(facts)]], Field(min_length=1, max_length=3))  # type: ignore[valid-type,misc]
        if facts
        else (list[str], Field(max_length=0))
    )
    return create_model(
        "Reason",
        __config__=ConfigDict(extra="forbid"),
        cites=cites,
        facts=fact,
        rationale=(str, Field(pattern=sentence_pattern(max_chars))),
    )


@lru_cache(maxsize=4096)
def schema_regex(ids: tuple[str, ...], facts: tuple[str, ...], max_chars: int) -> str:
    from outlines_core.json_schema import build_regex_from_schema

    schema = TypeAdapter(answer_model(ids, facts, max_chars)).json_schema()
    return str(build_regex_from_schema(json.dumps(schema), whitespace_pattern=r" ?"))


def parse(text: str, model: type[BaseModel]) -> tuple[str, list[str], list[str]]:
    """(sentence, cited ids, facts) of a valid answer; ValueError naming the problem."""
    from pydantic import ValidationError

    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    try:
        answer = model.model_validate(parsed)
    except ValidationError as exc:
        raise ValueError(f"answer fails the schema: {exc.errors()[0]['msg']}") from None
    cites = list(answer.cites)  # type: ignore[attr-defined]
    if len(set(cites)) != len(cites):
        raise ValueError(f"duplicate cites {cites}")
    return str(answer.rationale), cites, list(answer.facts)  # type: ignore[attr-defined]
