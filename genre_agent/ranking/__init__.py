"""Rankers, one per ``ranking.mode``: an explicit table that the config names reach.

``"retrieval"`` has no LLM ranker: the candidates keep the retrieval order (see
``genre_agent.service.recommender``).
"""

from __future__ import annotations

from genre_agent.config import RankingConfig
from genre_agent.errors import RankingValidationError
from genre_agent.llm.base import LLM
from genre_agent.ranking.base import Ranker, RankerFactory, RankRequest
from genre_agent.ranking.listwise import ListwiseRanker
from genre_agent.ranking.scoring import ScoringRanker

RANKERS: dict[str, RankerFactory] = {
    "listwise": ListwiseRanker,
    "scoring": ScoringRanker,
}


def make_ranker(llm: LLM, cfg: RankingConfig) -> Ranker:
    """The ranker that ``ranking.mode`` names."""
    if cfg.mode not in RANKERS:
        raise RankingValidationError(
            f"ranking.mode {cfg.mode!r} has no LLM ranker; known: {sorted(RANKERS)}"
        )
    return RANKERS[cfg.mode](llm, cfg)


__all__ = ["RANKERS", "RankRequest", "Ranker", "make_ranker"]
