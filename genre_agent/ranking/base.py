"""The ranking seam: a rank request, the Ranker protocol, and grounding checks."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from genre_agent.catalog.items import Item
from genre_agent.config import RankingConfig
from genre_agent.llm.base import LLM
from genre_agent.types import Candidate, RankedItem, Trace


@dataclass
class RankRequest:
    candidates: list[Candidate]
    history: list[Item] = field(default_factory=list)
    query: str | None = None
    profile: str | None = None
    k: int = 10


_COMMON = {
    "the",
    "this",
    "it",
    "its",
    "user",
    "users",
    "you",
    "your",
    "both",
    "like",
    "likes",
    "liked",
    "since",
    "because",
    "as",
    "a",
    "an",
    "and",
    "with",
    "if",
    "fans",
    "fan",
    "given",
    "based",
    "similar",
    "also",
    "for",
    "in",
    "their",
    "they",
    "he",
    "she",
    "i",
}
_TERM_RE = re.compile(r"\b(?:[A-Z][\w'\-]+|\d{2,})\b")


def unsupported_terms(rationale: str, evidence: str) -> list[str]:
    """Capitalised words and numbers of the rationale that the evidence text never mentions."""
    ev = evidence.lower()
    out = []
    for term in _TERM_RE.findall(rationale):
        if term.lower() in _COMMON:
            continue
        if term.lower() not in ev and term not in out:
            out.append(term)
    return out


def _history_view(items: Sequence[Item]) -> list[dict[str, str]]:
    return [{"title": it.title, "genres": str(it.metadata.get("genres", ""))} for it in items]


class Ranker(Protocol):
    """The ranking seam: every mode ranks many requests in one batched pass."""

    def rank_many(
        self, requests: Sequence[RankRequest], temperature: float = 0.0, seed: int = 0
    ) -> list[tuple[list[RankedItem], Trace]]: ...


RankerFactory = Callable[[LLM, RankingConfig], Ranker]
