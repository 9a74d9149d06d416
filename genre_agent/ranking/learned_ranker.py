"""``ranking.mode = "learned"``: order the candidates by the fitted LightGBM model's score
over their features (genre_agent.ranking.learned); the LLM only as an optional feature."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from genre_agent.config import RankingConfig
from genre_agent.errors import GenreError
from genre_agent.llm.base import LLM
from genre_agent.ranking.base import Needs, RankerContext, RankRequest, top_by_score
from genre_agent.ranking.learned import FeatureBuilder, FeatureRequest, LearnedModel, llm_scores
from genre_agent.types import RankedItem, StageTiming, Trace
from retrievers.base import RetrievalQuery


class LearnedRanker:
    """Scores every candidate with the learned model; the LLM is called (one batched
    scoring call) only for requests whose history bucket has ``llm_feature`` on."""

    needs: ClassVar[Needs] = Needs(llm_feature=True, learned_model=True, orders_all=True)
    label: ClassVar[str] = "learned"

    def __init__(self, ctx: RankerContext) -> None:
        if ctx.learned is None:
            raise GenreError("ranking.mode 'learned' needs its fitted model (genre fit --ranker)")
        self.parts = ctx.learned
        self.llm_of = ctx.llm
        self.cfg: RankingConfig = ctx.config

    @classmethod
    def from_context(cls, ctx: RankerContext) -> LearnedRanker:
        return cls(ctx)

    def rank_many(
        self, requests: Sequence[RankRequest], temperature: float = 0.0, seed: int = 0
    ) -> list[tuple[list[RankedItem], Trace]]:
        t0 = time.perf_counter()
        model, builder = self.parts()
        scored, names = self.scores(model, builder, requests, seed)
        per_req = (time.perf_counter() - t0) / max(len(requests), 1)
        out = []
        for r, scores, used in zip(requests, scored, names, strict=True):
            trace = Trace(candidates=[], features=used)
            trace.timings.append(StageTiming(stage="learned", seconds=per_req))
            out.append((top_by_score(r.candidates, scores, r.k), trace))
        return out

    def scores(
        self,
        model: LearnedModel,
        builder: FeatureBuilder,
        requests: Sequence[RankRequest],
        seed: int,
    ) -> tuple[list[list[float]], list[list[str]]]:
        """Each candidate's learned score, and the features used, per request."""
        reqs = [
            FeatureRequest(
                r.retrieval or RetrievalQuery(),
                r.history,
                r.n_liked,
                [c.item for c in r.candidates],
                r.query,
                r.profile,
                r.user_ts,
            )
            for r in requests
        ]
        ask = [n for n, r in enumerate(reqs) if r.candidates and builder.llm_on(r.n_liked)]
        by_req: dict[int, list[float]] = {}
        if ask and builder.names[-1:] == ["llm.score"]:
            llm: LLM = self.llm_of()
            got = llm_scores(llm, self.cfg, [reqs[n] for n in ask], seed)
            by_req = dict(zip(ask, got, strict=True))
        scores, names = [], []
        for n, r in enumerate(reqs):
            x = builder.matrix(r, by_req.get(n))
            scores.append([float(v) for v in model.scores(x)])
            names.append(builder.request_names(r.n_liked))
        return scores, names
