"""Cold start by history length: stated preferences, a few-item profile, or the full history.

- 0 interactions: the stated preferences / query text seed retrieval (no history); with
  nothing stated either, the most popular items ("popular": the Recommender's cold path).
- 1..``few`` interactions: an LLM profile is built from those items and used with them.
- more: the usual history-based recommendation (with the stored profile if switched on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from genre_agent.catalog.items import Item
from genre_agent.service.profiles import Profiles
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import RecRequest
from genre_agent.types import Recommendation

Strategy = Literal["popular", "stated", "few", "history"]


@dataclass
class ColdStartResult:
    strategy: Strategy
    recommendation: Recommendation
    profile_text: str | None = None


def strategy_for(n_interactions: int, few: int = 5) -> Strategy:
    if n_interactions <= 0:
        return "stated"
    return "few" if n_interactions <= few else "history"


def recommend_cold(
    rec: Recommender,
    profiles: Profiles | None = None,
    user_id: str | None = None,
    history: Sequence[str] | None = None,
    stated: str | None = None,
    k: int | None = None,
    filters: dict[str, Any] | None = None,
    few: int = 5,
) -> ColdStartResult:
    """Pick the strategy from the number of interactions and recommend."""
    if history is None:
        rows = rec.interactions.history(user_id) if user_id else []
        history = [r.item_id for r in rows]
    if profiles is not None and user_id:
        gone = profiles.forgotten(user_id)
        history = [h for h in history if h not in gone]
    strategy = strategy_for(len(history), few)
    if strategy == "stated" and not stated:
        # Nothing to personalise from: the Recommender answers with the popularity list
        # (Trace.strategy "popular"), excluding whatever the user asked to forget.
        out = rec.recommend(user_id=user_id, k=k, filters=filters)
        return ColdStartResult("popular", out)
    if strategy == "stated":
        out = rec.recommend(query=stated, k=k, filters=filters, history=[])
        return ColdStartResult(strategy, out)
    known = rec.store.get(list(history))
    items: list[Item] = [known[i] for i in history if i in known]
    profile_text = None
    if profiles is not None and items and (strategy == "few" or _profile_switched_on(rec)):
        rec_profile = profiles.build(user_id or "anonymous", items)
        profile_text = rec_profile.profile.as_text()
    # Few items say little on their own: their profile drives both retrieval and rerank.
    # With a full history the profile goes where the profile.use_in_* switches say.
    req = RecRequest(
        user_id=user_id,
        history=list(history),
        query=stated,
        k=k,
        filters=filters,
        profile=profile_text,
        profile_scope="both" if strategy == "few" else "config",
    )
    out = rec.recommend_many([req])[0]
    return ColdStartResult(strategy, out, profile_text)


def _profile_switched_on(rec: Recommender) -> bool:
    cfg = rec.config.profile
    return cfg.use_in_retrieval or cfg.use_in_rerank
