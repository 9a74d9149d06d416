"""Stage 5, explain: a rationale for each of the top ``ranking.rationale_top_r`` items
(genre_agent.ranking.rationales), once, after ranking and evidence. A ranker whose answer
carries its rationales (``Needs.explains_inline``: listwise) has none added here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from genre_agent.config import Config
from genre_agent.llm.base import LLM
from genre_agent.llm.faults import iter_in_threads
from genre_agent.ranking import RankRequest, needs
from genre_agent.ranking.rationales import add_rationales
from genre_agent.types import RankedItem, StageTiming, Trace

Result = tuple[list[RankedItem], Trace]


def wanted(cfg: Config) -> bool:
    """Whether this stage writes rationales for ``cfg``."""
    return cfg.ranking.rationale_top_r > 0 and not needs(cfg).explains_inline


def explain(
    llm: Callable[[], LLM], cfg: Config, reqs: Sequence[RankRequest], results: list[Result]
) -> None:
    """Rationales for every result's top items, in place, in one batched pass."""
    if not wanted(cfg) or not any(r.candidates for r in reqs):
        return
    engine = llm()
    r = cfg.ranking
    add_rationales(engine, r, reqs, results, r.rationale_top_r, cfg.llm.temperature, cfg.llm.seed)
    for _, trace in results:
        trace.model_id, trace.model_revision = engine.model_id, engine.revision
        trace.engine = cfg.llm.engine


def explain_each(
    llm: LLM, cfg: Config, req: RankRequest, items: list[RankedItem], trace: Trace
) -> Iterator[RankedItem]:
    """Rationales for the top items of one result, each by its own request, submitted at
    once from a thread pool and yielded as they return; ``items`` and ``trace`` are
    updated in place. (An engine that serves concurrent callers answers them as they
    finish; daemon threads waited on in short slices, so Ctrl-C stops at once.)"""
    top = items[: cfg.ranking.rationale_top_r]
    one_req = RankRequest(req.candidates, req.history, req.query, req.profile, 1)

    def one(pos: int) -> tuple[int, RankedItem, Trace]:
        res: list[Result] = [([items[pos]], Trace(candidates=[]))]
        r = cfg.ranking
        add_rationales(llm, r, [one_req], res, 1, cfg.llm.temperature, cfg.llm.seed)
        return pos, res[0][0][0], res[0][1]

    t0 = time.perf_counter()
    for _, (pos, item, sub) in iter_in_threads(one, list(range(len(top))), len(top)):
        items[pos] = item
        trace.llm_calls += sub.llm_calls
        trace.prompt_tokens += sub.prompt_tokens
        trace.completion_tokens += sub.completion_tokens
        trace.raw_outputs += sub.raw_outputs
        trace.rejected_entries += sub.rejected_entries
        trace.template, trace.template_sha256 = sub.template, sub.template_sha256
        yield item
    # The calls run at once: their wall-clock time, not the sum of each call's (what the
    # batched path records), so an experiment's LLM seconds count a streamed answer too.
    trace.timings.append(StageTiming(stage="llm_rationales", seconds=time.perf_counter() - t0))
    trace.model_id, trace.model_revision = llm.model_id, llm.revision
    trace.engine = cfg.llm.engine
