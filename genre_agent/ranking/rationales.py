"""The one rationale path: every ranking mode explains its top items here.

Each item to explain gets its own prompt (``ranking.rationale_template``, default
``explain_item``), all sent in one batched engine call; the shared system prompt and history
make them share a prompt prefix. The answer is constrained to ``{"rationale": "..."}``.

Retry policy (one for every mode): an answer that is not that JSON, or whose rationale is
empty, is recorded in ``Trace.rejected_entries`` and retried with another seed, up to
``ranking.max_repair_rounds`` times. If it still fails, RankingValidationError is raised:
nothing is filled in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from genre_agent.config import RankingConfig
from genre_agent.errors import RankingValidationError
from genre_agent.llm.base import LLM, GenRequest, Message
from genre_agent.prompting import render, template_sha256
from genre_agent.ranking.base import RankRequest, _history_view, unsupported_terms
from genre_agent.types import RankedItem, StageTiming, Trace


def rationale_regex(max_chars: int) -> str:
    return r'\{"rationale": "[^"\\\n\r\t]{8,' + str(max_chars) + r'}"\}'


def evidence_text(req: RankRequest, item_title: str, item_text: str, genres: object) -> str:
    """What a rationale may cite: the request, the profile, the history and the item."""
    base = " ".join(
        [req.query or "", req.profile or ""]
        + [f"{h.title} {h.text} {h.metadata.get('genres', '')}" for h in req.history]
    )
    return f"{base} {item_title} {item_text} {genres or ''}"


@dataclass
class _Job:
    result: int  # index into the results list
    pos: int  # position in that result's ranked list
    request: GenRequest
    raw: list[str] = field(default_factory=list)


def add_rationales(
    llm: LLM,
    cfg: RankingConfig,
    requests: Sequence[RankRequest],
    results: list[tuple[list[RankedItem], Trace]],
    top_r: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> None:
    """Give the top ``top_r`` items of every result a rationale, in place (see module doc)."""
    jobs: list[_Job] = []
    for n, (req, (ranked, _)) in enumerate(zip(requests, results, strict=True)):
        for pos, entry in enumerate(ranked[:top_r]):
            item = entry.item
            prompt = render(
                cfg.rationale_template,
                query=req.query,
                profile=req.profile,
                history=_history_view(req.history),
                item={"id": item.id, "title": item.title, "text": item.text},
                max_item_chars=cfg.max_item_chars,
            )
            jobs.append(
                _Job(
                    n,
                    pos,
                    GenRequest(
                        messages=(Message("system", prompt.system), Message("user", prompt.user)),
                        regex=rationale_regex(cfg.max_rationale_chars),
                        max_tokens=cfg.max_rationale_chars // 2 + 24,
                        temperature=temperature,
                        seed=seed,
                        hint={"task": "explain", "item_id": item.id},
                    ),
                )
            )
    spent = [0.0] * len(results)
    for (_, trace), n in zip(results, range(len(results)), strict=True):
        if not trace.template and any(j.result == n for j in jobs):
            # Retrieval mode: the rationale prompt is the request's only prompt.
            trace.template = cfg.rationale_template
            trace.template_sha256 = template_sha256(cfg.rationale_template)
    todo = jobs
    for attempt in range(cfg.max_repair_rounds + 1):
        if not todo:
            break
        # A request the engine aborts (vLLM's "Failed to advance FSM" ends it with
        # finish_reason "error" and no text) is retried with another seed.
        reqs = [
            j.request if attempt == 0 else replace(j.request, seed=j.request.seed + 1000 * attempt)
            for j in todo
        ]
        t0 = time.perf_counter()
        outs = llm.generate(reqs)
        elapsed = time.perf_counter() - t0
        failed = []
        for job, out in zip(todo, outs, strict=True):
            ranked, trace = results[job.result]
            trace.llm_calls += 1
            trace.prompt_tokens += out.prompt_tokens
            trace.completion_tokens += out.completion_tokens
            trace.raw_outputs.append(out.text)
            spent[job.result] += elapsed / len(todo)
            why = ""
            try:
                parsed = json.loads(out.text)
                why = parsed.get("rationale", "") if isinstance(parsed, dict) else ""
            except ValueError:
                pass
            entry = ranked[job.pos]
            if isinstance(why, str) and why.strip():
                req = requests[job.result]
                ev = evidence_text(
                    req, entry.item.title, entry.item.text, entry.item.metadata.get("genres")
                )
                ranked[job.pos] = entry.model_copy(
                    update={"rationale": why, "unsupported_terms": unsupported_terms(why, ev)}
                )
                continue
            trace.rejected_entries.append(
                {
                    "reason": "malformed rationale",
                    "item_id": entry.item.id,
                    "finish_reason": out.finish_reason,
                    "entry": out.text[:200],
                }
            )
            if attempt == cfg.max_repair_rounds:
                raise RankingValidationError(
                    f"rationale for item {entry.item.id!r} is not valid JSON after "
                    f"{attempt + 1} attempts: {out.text[:200]!r} "
                    f"(finish_reason={out.finish_reason}, tokens={out.completion_tokens})"
                )
            failed.append(job)
        todo = failed
    for (_, trace), seconds in zip(results, spent, strict=True):
        if seconds:
            trace.timings.append(StageTiming(stage="llm_rationales", seconds=seconds))
