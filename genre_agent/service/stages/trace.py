"""Stage 6, trace: what produced each answer (timings, config, sources, profile,
strategy, who ranked it) and one-line notes (cold start, skipped sources, shortfalls)."""

from __future__ import annotations

import json

from genre_agent.config import Config
from genre_agent.ranking import ranker_class
from genre_agent.service.stages.resolve import Resolved
from genre_agent.types import RankedItem, Recommendation, StageTiming, Trace


def finish(cfg: Config, job: Resolved, items: list[RankedItem], trace: Trace) -> Recommendation:
    trace.timings.insert(0, StageTiming(stage="retrieve", seconds=job.seconds))
    trace.config_sha256 = cfg.fingerprint()
    trace.sources = dict(job.signals)
    trace.profile = job.profile or None
    trace.profile_used = list(job.profile_used)
    trace.strategy = job.strategy
    trace.ranked_by = (
        "popularity" if job.strategy == "popular" else ranker_class(cfg.ranking.mode).label
    )
    trace.notes.extend(job.notes)
    if len(items) < job.k:
        trace.notes.append(shortfall(cfg, job, len(items), len(trace.rejected_entries)))
    return Recommendation(user_id=job.req.user_id, items=items, trace=trace)


def shortfall(cfg: Config, job: Resolved, got: int, rejected: int) -> str:
    """Why fewer items than asked came back, in one line."""
    cands, k, filters = len(job.candidates), job.k, job.req.filters
    shown = json.dumps(filters, ensure_ascii=False) if filters else ""
    if cands >= k:
        why = f"the ranker returned {got} valid items from {cands} candidates"
        why += f" ({rejected} rejected entries)" if rejected else ""
    elif filters and cands == 0:
        why = f"no item matched the filter {shown}"
    elif filters:
        why = f"only {cands} candidates matched the filter {shown}"
    elif cands >= cfg.retrieval.n_candidates:
        why = f"retrieval.n_candidates is {cfg.retrieval.n_candidates}"
    else:
        why = f"only {cands} candidates are left once the user's history is excluded"
    return f"{got} of {k} asked: {why}"
