"""Typed results shared by retrievers, rankers and the service."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genre_agent.catalog.items import Item


class Support(BaseModel):
    """A history item that supports a recommendation, and how."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    # Which signals found the link: "itemknn" (co-occurrence), "embedding" (text
    # similarity), "attributes" (shared genres/tags only).
    by: list[str]
    similarity: float = 0.0
    # Attributes the recommended item shares with this history item ("genre Sci-Fi").
    shared: list[str] = Field(default_factory=list)


class Evidence(BaseModel):
    """Why an item was recommended, computed before any LLM runs (service/evidence.py)."""

    model_config = ConfigDict(frozen=True)

    # The one or two history items that support it most.
    history: list[Support] = Field(default_factory=list)
    # The item's attributes ("genre Comedy", "tag space", "1980s") shared with the history.
    shared: list[str] = Field(default_factory=list)
    # Words of the request found in the item's data.
    request: list[str] = Field(default_factory=list)
    # Each candidate source that ranked it, with its rank there (1 = first).
    signals: dict[str, int] = Field(default_factory=dict)

    def ids(self) -> list[str]:
        return [s.id for s in self.history]


class Candidate(BaseModel):
    """An item proposed by a retriever, with that retriever's score (higher is better)."""

    model_config = ConfigDict(frozen=True)

    item: Item
    score: float
    source: str
    # Fusion: the item's rank in each source that proposed it.
    ranks: dict[str, int] = Field(default_factory=dict)
    evidence: Evidence | None = None


class RankedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    rank: int
    item: Item
    score: float | None = None
    rationale: str | None = None
    # The history items the rationale cites (ids from ``evidence.history``).
    cites: list[str] = Field(default_factory=list)
    # Words in the rationale (names, numbers, genres) that its evidence does not contain.
    unsupported_terms: list[str] = Field(default_factory=list)
    evidence: Evidence | None = None
    # Scoring mode: the aggregated LLM score before fusion, and the variance of the item's
    # rank across shuffled candidate orders (None with a single order).
    llm_score: float | None = None
    rank_variance: float | None = None


class StageTiming(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: str
    seconds: float


class Trace(BaseModel):
    """How a result was produced: enough to audit and replay it."""

    candidates: list[Candidate]
    template: str = ""
    template_sha256: str = ""
    prompt_sha256: str = ""
    model_id: str = ""
    model_revision: str = ""
    engine: str = ""
    config_sha256: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    repair_rounds: int = 0
    rejected_entries: list[dict[str, Any]] = Field(default_factory=list)
    raw_outputs: list[str] = Field(default_factory=list)
    timings: list[StageTiming] = Field(default_factory=list)
    # Scoring mode: agreement between permutations (mean Spearman rho with the aggregate),
    # and why the ranker fell back to the retrieval order (None: it did not).
    stability: float | None = None
    fallback: str | None = None
    # Which signals ranked the list: the candidate sources and their fusion weights, and
    # who ordered the candidates ("retrieval", "llm:scoring", "llm:listwise").
    sources: dict[str, float] = Field(default_factory=dict)
    ranked_by: str = ""
    # The user profile text this request had, and where it went ("retrieval", "rerank").
    profile: str | None = None
    profile_used: list[str] = Field(default_factory=list)
    # Why the answer has fewer items than asked, and similar one-line facts.
    notes: list[str] = Field(default_factory=list)
    # "personal": ranked for this request's history/query/profile; "popular": a cold
    # request (no history, no query, no profile) got the popularity source's list.
    strategy: str = "personal"
    # ranking.mode = "learned": the features that ranked this list (the LLM's only in the
    # history buckets where ranking.learned.llm_feature turns it on).
    features: list[str] = Field(default_factory=list)
    # Rationales that were asked for but are missing (LLM budget spent, engine down).
    missing_rationales: list[str] = Field(default_factory=list)
    # The per-user cache (service.cache_url): "hit" (served from it), "miss" (computed and
    # stored), "bypass" (not cacheable: a query, a given history, the LLM); None: cache off.
    cache: Literal["hit", "miss", "bypass"] | None = None
    # Online experiments (genre_agent.experiments, docs/experiments.md): the experiment and
    # the variant that served this answer (None: no experiment applies). Interleaved, the
    # variant is "interleaved" and ``teams`` names, per item, the variant that picked it.
    experiment: str | None = None
    variant: str | None = None
    teams: list[str] = Field(default_factory=list)

    def seconds(self, stage: str) -> float:
        return sum(t.seconds for t in self.timings if t.stage == stage)


class Recommendation(BaseModel):
    """``recommend``'s answer: ranked items plus the trace."""

    user_id: str | None
    items: list[RankedItem]
    trace: Trace


class StreamEvent(BaseModel):
    """One event of ``Recommender.recommend_stream``: "ranked" (the list, no rationales yet),
    "rationale" (one item with its rationale), "done" (the whole result)."""

    kind: Literal["ranked", "rationale", "done"]
    recommendation: Recommendation | None = None
    item: RankedItem | None = None
