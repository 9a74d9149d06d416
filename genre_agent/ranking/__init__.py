"""Rankers, one per ``ranking.mode``: the one table that the config's mode names reach.

Each entry is a class that declares what it needs (``Needs``: the LLM, a fitted model,
evidence first, ...) and builds from a ``RankerContext``. Everything else (the service's
stages, ``needs_llm``, the HTTP fast path, the harness) reads those declarations; nothing
compares mode names. Adding a mode = one module + one entry here (docs/architecture.md).
"""

from __future__ import annotations

from genre_agent.config import Config, RankingConfig, SourceKind
from genre_agent.errors import RankingValidationError
from genre_agent.llm.base import LLM
from genre_agent.ranking.base import Needs, Ranker, RankerContext, RankerFactory, RankRequest
from genre_agent.ranking.learned import feature_sources, uses_llm
from genre_agent.ranking.learned_ranker import LearnedRanker
from genre_agent.ranking.listwise import ListwiseRanker
from genre_agent.ranking.retrieval import RetrievalRanker
from genre_agent.ranking.scoring import ScoringRanker

RANKERS: dict[str, RankerFactory] = {
    "retrieval": RetrievalRanker,
    "learned": LearnedRanker,
    "listwise": ListwiseRanker,
    "scoring": ScoringRanker,
}


def ranker_class(mode: str) -> RankerFactory:
    """The ``RANKERS`` entry that ``ranking.mode`` names; an error naming the known modes."""
    if mode not in RANKERS:
        raise RankingValidationError(f"ranking.mode {mode!r} is unknown; known: {sorted(RANKERS)}")
    return RANKERS[mode]


def needs(cfg: Config | RankingConfig) -> Needs:
    """What the configured ranking mode needs."""
    ranking = cfg.ranking if isinstance(cfg, Config) else cfg
    return ranker_class(ranking.mode).needs


def ranker_calls_llm(cfg: Config) -> bool:
    """Whether the configured ranker itself calls the LLM (ranking, or the learned model's
    LLM feature in some history bucket)."""
    n = needs(cfg)
    return n.llm or (n.llm_feature and uses_llm(cfg))


def needs_llm(cfg: Config) -> bool:
    """Whether serving ``cfg`` calls the LLM on a warm request: its ranker does,
    rationales are asked for, the rerank reads a profile, or the catalog is enriched.
    (A profile used only for retrieval, or a cold request's "few" profile, loads the
    engine on first use: most requests never need it.)"""
    return (
        ranker_calls_llm(cfg)
        or cfg.ranking.rationale_top_r > 0
        or cfg.profile.use_in_rerank
        or cfg.enrich.enabled
    )


def ranker_sources(cfg: Config) -> list[SourceKind]:
    """The sources the ranker reads besides the retrieval fusion (the learned model's
    feature sources); they are fitted and loaded like retrieval sources."""
    return list(feature_sources(cfg)) if needs(cfg).learned_model else []


def build_ranker(ctx: RankerContext) -> Ranker:
    """The ranker that ``ctx.config.mode`` names, built from ``ctx``."""
    return ranker_class(ctx.config.mode).from_context(ctx)


def make_ranker(llm: LLM, cfg: RankingConfig) -> Ranker:
    """The ranker that ``ranking.mode`` names, for an LLM mode used on its own."""
    return build_ranker(RankerContext(cfg, lambda: llm))


__all__ = [
    "RANKERS",
    "Needs",
    "RankRequest",
    "Ranker",
    "RankerContext",
    "build_ranker",
    "make_ranker",
    "needs",
    "needs_llm",
    "ranker_sources",
]
