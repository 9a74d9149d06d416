"""The ranking seam: a rank request, the Ranker protocol, what a ranker needs, grounding checks."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from genre_agent.catalog.items import Item
from genre_agent.config import RankingConfig
from genre_agent.llm.base import LLM
from genre_agent.types import Candidate, RankedItem, Trace
from retrievers.base import RetrievalQuery


@dataclass
class RankRequest:
    candidates: list[Candidate]
    history: list[Item] = field(default_factory=list)
    query: str | None = None
    profile: str | None = None
    k: int = 10
    # What a feature-based ranker (learned) reads besides the candidates: the retrieval
    # query, the liked items of the whole history, when the latest interaction happened.
    retrieval: RetrievalQuery | None = None
    n_liked: int = 0
    user_ts: float | None = None


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


def history_view(items: Sequence[Item]) -> list[dict[str, str]]:
    return [{"title": it.title, "genres": str(it.metadata.get("genres", ""))} for it in items]


@dataclass(frozen=True)
class Needs:
    """What a ranking mode needs; the service, ``needs_llm`` and the harness read this,
    never the mode's name."""

    # Ranks with the LLM on every request (and may see popularity-hinted candidates).
    llm: bool = False
    # Calls the LLM only when ``ranking.learned.llm_feature`` is on for some bucket.
    llm_feature: bool = False
    # A fitted ranker model (``genre fit --ranker``) and the feature sources it reads.
    learned_model: bool = False
    # Evidence for every candidate before ranking (an LLM may pick and explain any);
    # otherwise evidence is computed for the ranked top k only.
    evidence_first: bool = False
    # Orders every candidate by a score: the harness asks for the whole list (AUC, any k).
    orders_all: bool = False
    # Its answer carries the rationales (listwise two_phase): no separate explain stage.
    explains_inline: bool = False
    # The mode that serves this one's list without the LLM (the HTTP fast path).
    without_llm: str = "retrieval"


@dataclass
class RankerContext:
    """What a ranker is built from: the ranking config, the LLM (built on first use) and,
    for the learned mode, its fitted model and feature builder (built on first use)."""

    config: RankingConfig
    llm: Callable[[], LLM]
    learned: Callable[[], tuple[Any, Any]] | None = None


class Ranker(Protocol):
    """The ranking seam: every mode ranks many requests in one batched pass."""

    def rank_many(
        self, requests: Sequence[RankRequest], temperature: float = 0.0, seed: int = 0
    ) -> list[tuple[list[RankedItem], Trace]]: ...


class RankerFactory(Protocol):
    """A ``RANKERS`` entry: a class that declares its needs and builds from a context."""

    @property
    def needs(self) -> Needs: ...

    # How Trace.ranked_by names it ("retrieval", "learned", "llm:scoring", ...).
    @property
    def label(self) -> str: ...

    def from_context(self, ctx: RankerContext) -> Ranker: ...


def top_by_score(
    candidates: Sequence[Candidate], scores: Sequence[float], k: int
) -> list[RankedItem]:
    """The top ``k`` candidates by ``scores``, ties broken by item id."""
    pairs = sorted(zip(candidates, scores, strict=True), key=lambda t: (-t[1], t[0].item.id))
    return [
        RankedItem(rank=i + 1, item=c.item, score=s, evidence=c.evidence)
        for i, (c, s) in enumerate(pairs[:k])
    ]
