"""Stage 3, rank: the configured ranker (``ranking.RANKERS``) orders each request's
candidates. What it needs (the LLM, the learned model, popularity hints) comes from its
declared ``Needs``; no mode name is compared here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from genre_agent.config import Config
from genre_agent.llm.base import LLM
from genre_agent.ranking import RankerContext, RankRequest, build_ranker, needs
from genre_agent.ranking.popularity_hint import hint_candidates, popularity_tiers
from genre_agent.service.sources import Sources
from genre_agent.service.stages.resolve import Resolved
from genre_agent.storage.base import InteractionBackend
from genre_agent.types import RankedItem, Trace

Result = tuple[list[RankedItem], Trace]


def rank_request(job: Resolved) -> RankRequest:
    """What a ranker sees of a resolved request."""
    h = job.history
    return RankRequest(
        job.candidates,
        h.liked,
        job.req.query,
        job.rerank_profile,
        job.k,
        retrieval=job.query,
        n_liked=len(h.items) - len(h.disliked),
        user_ts=job.user_ts,
    )


def tiers(interactions: InteractionBackend, sources: Sources) -> Callable[[], dict[str, str]]:
    """Popularity tiers from the interaction store's counts over the indexed catalog."""

    def count() -> dict[str, str]:
        counts = interactions.item_counts()
        return popularity_tiers(counts, max(len(sources.catalog()), len(counts)))

    return count


class RankStage:
    def __init__(
        self,
        llm: Callable[[], LLM],
        learned: Callable[[], tuple[object, object]],
        tiers: Callable[[], dict[str, str]],
    ) -> None:
        self.llm = llm
        self.learned = learned
        self.tiers = tiers

    def requests(self, cfg: Config, jobs: Sequence[Resolved]) -> list[RankRequest]:
        """The rank requests; an LLM ranker sees popularity-hinted candidates when
        ``ranking.popularity_hint`` is on."""
        reqs = [rank_request(j) for j in jobs]
        if not (needs(cfg).llm and cfg.ranking.popularity_hint):
            return reqs
        tiers = self.tiers()
        for r in reqs:
            r.candidates = hint_candidates(r.candidates, tiers)
        return reqs

    def run(self, cfg: Config, jobs: Sequence[Resolved]) -> tuple[list[Result], list[RankRequest]]:
        """Each job's (items, trace), and the rank requests the ranker saw (the explain
        stage explains with the same ones). The ranker itself writes no rationales unless
        its answer carries them (``explains_inline``)."""
        n = needs(cfg)
        ranking = cfg.ranking
        if not n.explains_inline:
            ranking = ranking.model_copy(update={"rationale_top_r": 0})
        ranker = build_ranker(RankerContext(ranking, self.llm, self.learned))
        reqs = self.requests(cfg, jobs)
        nonempty = [i for i, r in enumerate(reqs) if r.candidates]
        ranked = ranker.rank_many(
            [reqs[i] for i in nonempty], temperature=cfg.llm.temperature, seed=cfg.llm.seed
        )
        results: list[Result] = [([], Trace(candidates=[])) for _ in reqs]
        for i, out in zip(nonempty, ranked, strict=True):
            results[i] = out
        for job, (items, trace) in zip(jobs, results, strict=True):
            plain = {c.item.id: c for c in job.candidates}
            # A hint is prompt text, not item data: give the items back. A listwise answer
            # has no score: the item shows its retrieval score.
            items[:] = [
                it.model_copy(
                    update={
                        "item": plain[it.item.id].item,
                        "score": it.score if it.score is not None else plain[it.item.id].score,
                    }
                )
                for it in items
            ]
            trace.candidates = job.candidates
            if n.llm:
                trace.engine = cfg.llm.engine
        return results, reqs
