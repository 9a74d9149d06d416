"""Fine-tuning examples and the exact scoring request each renders as (re-exported by
``genre_eval.tuning``)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genre_agent.config import RankingConfig, TuneConfig
from genre_agent.errors import ConfigError
from genre_agent.llm.base import ScoreRequest
from genre_agent.ranking.base import RankRequest
from genre_agent.ranking.scoring import ScoringRanker
from genre_agent.types import Candidate


@dataclass(frozen=True)
class Example:
    """One training example: ``candidates[position] == positive``."""

    user_id: str
    history: tuple[str, ...]
    candidates: tuple[str, ...]
    position: int

    @property
    def positive(self) -> str:
        return self.candidates[self.position]


def build_examples(ds: Any, cfg: TuneConfig) -> list[Example]:
    """``cfg.n_examples`` examples from the training part of ``ds`` (an eval Dataset).

    Users are visited round-robin in a seeded order; each example picks a positive at time t
    among the user's last ``recent`` training interactions (with at least ``min_history``
    before it). Training interactions are ``rows[:-2]``: the last two are the validation and
    test targets and are never used, not even as history. Negatives are drawn uniformly from
    items the user never interacted with (as the eval's ``sampled`` protocol does).
    """
    from genre_eval.protocols import user_seed

    rng = random.Random(cfg.seed)
    all_ids = sorted(ds.items)
    users = []
    for user, rows in sorted(ds.by_user.items()):
        train = rows[:-2]  # never the validation (rows[-2]) or test (rows[-1]) target
        if len(train) > cfg.min_history:
            users.append((user, train, {r.item_id for r in rows}))
    if not users:
        raise ConfigError(
            f"tune: no user has more than min_history={cfg.min_history} training interactions"
        )
    rng.shuffle(users)
    n_neg = cfg.n_candidates - 1
    out = []
    for k in range(cfg.n_examples):
        user, train, seen = users[k % len(users)]
        urng = random.Random(user_seed(cfg.seed, user, f"tune:{k}"))
        lo = max(cfg.min_history, len(train) - cfg.recent)
        t = urng.randrange(lo, len(train))
        history = tuple(r.item_id for r in train[:t])
        positive = train[t].item_id
        negatives: list[str] = []
        chosen: set[str] = set()
        while len(negatives) < n_neg:  # rejection sampling: the catalog is much larger
            cand = all_ids[urng.randrange(len(all_ids))]
            if cand not in seen and cand not in chosen:
                chosen.add(cand)
                negatives.append(cand)
        urng.shuffle(negatives)
        position = urng.randrange(cfg.n_candidates)
        cands = [*negatives[:position], positive, *negatives[position:]]
        out.append(Example(user, history, tuple(cands), position))
    return out


class _NoLLM:
    """Stand-in engine: the ranker is only used to render prompts."""

    model_id = "none"
    revision = ""


def training_tiers(ds: Any) -> dict[str, str]:
    """Popularity tiers over the training interactions, exactly as the eval harness counts."""
    from genre_agent.ranking.popularity_hint import popularity_tiers
    from genre_eval.protocols import train_interactions

    counts = Counter(r.item_id for r in train_interactions(ds))
    return popularity_tiers({i: counts.get(i, 0) for i in ds.items}, len(ds.items))


def score_request(
    ex: Example,
    ds: Any,
    history_len: int,
    ranking: RankingConfig,
    tiers: Mapping[str, str] | None = None,
) -> ScoreRequest:
    """The exact ScoreRequest the scoring ranker sends at serve time for this example.

    With ``ranking.popularity_hint`` the candidates carry their popularity tier (``tiers``,
    computed from the training interactions when not given)."""
    ranker = ScoringRanker(
        _NoLLM(),  # type: ignore[arg-type]
        ranking.model_copy(update={"permutations": 1, "window_size": max(len(ex.candidates), 2)}),
    )
    hist = [ds.items[h] for h in ex.history][-history_len:] if history_len else []
    cands = [Candidate(item=ds.items[c], score=0.0, source="tune") for c in ex.candidates]
    if ranking.popularity_hint:
        from genre_agent.ranking.popularity_hint import hint_candidates

        cands = hint_candidates(cands, tiers if tiers is not None else training_tiers(ds))
    req = RankRequest(candidates=cands, history=hist, k=len(ex.candidates))
    _jobs, reqs = ranker._plan([req], seed=0)
    if len(reqs) != 1:
        raise ConfigError("tune: one example must render as exactly one scoring pass")
    return reqs[0]
