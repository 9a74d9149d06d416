"""Runs the stages (genre_agent.service.stages) for a batch of requests, in order:
resolve -> retrieve -> rank -> evidence -> explain -> trace."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from genre_agent.config import Config
from genre_agent.llm.base import LLM
from genre_agent.ranking import needs
from genre_agent.ranking.base import top_by_score
from genre_agent.service.requests import RecRequest
from genre_agent.service.sources import Sources
from genre_agent.service.stages import explain as explain_stage
from genre_agent.service.stages.evidence import EvidenceStage
from genre_agent.service.stages.rank import RankStage, rank_request
from genre_agent.service.stages.resolve import Resolved, Resolver
from genre_agent.service.stages.retrieve import Gather, retrieve
from genre_agent.service.stages.trace import finish
from genre_agent.types import Recommendation, StreamEvent, Trace


class Pipeline:
    """The stages wired together; the Recommender builds one from its config."""

    def __init__(
        self,
        resolver: Resolver,
        sources: Sources,
        evidence: EvidenceStage,
        ranker: RankStage,
        llm: Callable[[], LLM],
    ) -> None:
        self.resolver = resolver
        self.sources = sources
        self.evidence = evidence
        self.ranker = ranker
        self.llm = llm

    def prepare(self, cfg: Config, req: RecRequest, gather: Gather) -> Resolved:
        """Resolve and retrieve one request (with evidence first when the ranker needs it)."""
        job = retrieve(self.sources, self.resolver.resolve(req), gather)
        if needs(cfg).evidence_first and job.strategy != "popular":
            self.evidence.before_rank(job)
        return job

    def run(
        self, cfg: Config, jobs: Sequence[Resolved], explain: bool = True
    ) -> list[Recommendation]:
        """Rank, attach evidence, explain and trace prepared jobs. Cold requests answered by
        popularity keep the popularity order: no LLM ranks or explains them."""
        warm = [j for j in jobs if j.strategy != "popular"]
        results, reqs = self.ranker.run(cfg, warm) if warm else ([], [])
        for job, (items, _) in zip(warm, results, strict=True):
            items[:] = self.evidence.after_rank(job, items)
        if explain:
            explain_stage.explain(self.llm, cfg, reqs, results)
        by_job = dict(zip(map(id, warm), results, strict=True))
        out = []
        for job in jobs:
            if job.strategy == "popular":
                ranked = top_by_score(job.candidates, [c.score for c in job.candidates], job.k)
                items, trace = (
                    self.evidence.after_rank(job, ranked),
                    Trace(candidates=job.candidates),
                )
            else:
                items, trace = by_job[id(job)]
            out.append(finish(cfg, job, items, trace))
        return out

    def stream(self, cfg: Config, job: Resolved) -> Iterator[StreamEvent]:
        """One request: the ranked list (with evidence, without rationales), then each
        rationale as its engine call returns, then the whole result."""
        quiet = cfg.model_copy(
            update={"ranking": cfg.ranking.model_copy(update={"rationale_top_r": 0})}
        )
        ranked = self.run(quiet, [job], explain=False)[0]
        yield StreamEvent(kind="ranked", recommendation=ranked)
        if not ranked.items or job.strategy == "popular" or not explain_stage.wanted(cfg):
            yield StreamEvent(kind="done", recommendation=ranked)
            return
        items, trace = list(ranked.items), ranked.trace
        for item in explain_stage.explain_each(self.llm(), cfg, rank_request(job), items, trace):
            yield StreamEvent(kind="rationale", item=item)
        done = ranked.model_copy(update={"items": items, "trace": trace})
        yield StreamEvent(kind="done", recommendation=done)
