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
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from genre_agent.catalog.items import Item
from genre_agent.config import RankingConfig
from genre_agent.errors import RankingValidationError
from genre_agent.llm.base import LLM, Generation, GenRequest, Message
from genre_agent.prompting import RenderedPrompt, render, template_sha256
from genre_agent.ranking import rationale_facts, rationale_linked
from genre_agent.ranking.base import RankRequest, history_view
from genre_agent.ranking.grounding import (
    UNSAFE_KINDS,
    attributes,
    display_title,
    grammar_faults,
    markup_problems,
    negation_faults,
    title_forms,
    unsupported_claims,
    voice_faults,
)
from genre_agent.ranking.rationale_linked import floor_sentence, shares_text
from genre_agent.ranking.rationale_schema import (
    OPENERS,
    answer_model,
    rationale_regex,
    schema_regex,
)
from genre_agent.types import Evidence, RankedItem, StageTiming, Trace

# The answer schemas' names stay importable from here (their home before the split).
__all__ = [
    "OPENERS",
    "add_rationales",
    "answer_model",
    "parse_answer",
    "rationale_regex",
    "sentence_problems",
    "shares_text",
]
_schema_regex = schema_regex


@dataclass
class _Job:
    result: int  # index into the results list
    pos: int  # position in that result's ranked list
    request: GenRequest
    evidence: Evidence | None
    model: type[BaseModel] | None
    facts: bool = False  # the "facts" format (genre_agent.ranking.rationale_facts)


def _request(
    cfg: RankingConfig,
    req: RankRequest,
    item: Item,
    ev: Evidence | None,
    temperature: float,
    seed: int,
) -> tuple[GenRequest, type[BaseModel] | None]:
    evidence = ev or Evidence()
    if cfg.rationale_format == "evidence" and not evidence.history:
        # Nothing liked to be "like" (chat, query only): the facts format's prompt asks how
        # the item meets the request, and its alphabet cannot write markup.
        cfg = cfg.model_copy(
            update={"rationale_format": "facts", "rationale_template": "explain_facts"}
        )
    prompt, facts = _prompt(cfg, req, item, evidence)
    messages = (Message("system", prompt.system), Message("user", prompt.user))
    regex, model, max_tokens = _constraint(cfg, item, evidence, facts)
    hint = {
        "task": "explain",
        "format": cfg.rationale_format,
        "item_id": item.id,
        "item_title": display_title(item.title),
        "evidence_ids": list(evidence.ids()),
        "evidence_titles": [h.title for h in evidence.history],
        "evidence_shared": [list(h.shared) for h in evidence.history],
        "facts": facts,
        "cites": rationale_linked.choose_links(item, evidence)[1]
        if cfg.rationale_format == "linked"
        else [],
    }
    return (
        GenRequest(
            messages=messages,
            regex=regex,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            hint=hint,
        ),
        model,
    )


def _prompt(
    cfg: RankingConfig, req: RankRequest, item: Item, evidence: Evidence
) -> tuple[RenderedPrompt, list[str]]:
    """The rationale prompt of ``item``, and the facts it offers (the "facts" format only)."""
    if cfg.rationale_format == "facts":
        ctx = rationale_facts.prompt_context(item, evidence, req.query, req.profile)
        return render(cfg.rationale_template, **ctx), ctx["facts"]
    if cfg.rationale_format == "linked":
        ctx = rationale_linked.prompt_context(item, evidence, req.query, req.profile)
        return render(cfg.rationale_template, **ctx), ctx["phrases"]
    prompt = render(
        cfg.rationale_template,
        query=req.query,
        profile=req.profile,
        history=history_view(req.history),
        item={
            "id": item.id,
            "title": display_title(item.title),
            "text": item.text,
            "genres": str(item.metadata.get("genres", "")).replace("|", ", "),
        },
        evidence={
            **evidence.model_dump(),
            "history": [
                {**h.model_dump(), "shares": shares_text(h.shared)} for h in evidence.history
            ],
        },
        max_item_chars=cfg.max_item_chars,
    )
    return prompt, []


def _constraint(
    cfg: RankingConfig, item: Item, evidence: Evidence, facts: list[str]
) -> tuple[str, type[BaseModel] | None, int]:
    """(regex, answer model, max_tokens) of the answer in ``cfg``'s rationale format."""
    model: type[BaseModel] | None
    if cfg.rationale_format == "free":
        regex, model = rationale_regex(cfg.max_rationale_chars), None
        max_tokens = cfg.max_rationale_chars // 2 + 24
    elif cfg.rationale_format == "facts":
        ids = tuple(evidence.ids())
        regex = rationale_facts.schema_regex(ids, tuple(facts), cfg.max_rationale_chars)
        model = rationale_facts.answer_model(ids, facts, cfg.max_rationale_chars)
        # The sentence (~3 characters a token) plus the cites, the facts and the JSON.
        max_tokens = cfg.max_rationale_chars // 3 + 24 + 8 * len(ids) + 24
    elif cfg.rationale_format == "linked":
        # The chosen facts are the phrases; the cites are the liked items they name.
        cites = tuple(rationale_linked.choose_links(item, evidence)[1])
        regex = rationale_linked.schema_regex(cites, tuple(facts), cfg.max_rationale_chars)
        model = rationale_linked.answer_model(cites, facts, cfg.max_rationale_chars)
        max_tokens = rationale_linked.max_tokens(cites, facts, cfg.max_rationale_chars)
    else:
        support = tuple((h.id, h.title, tuple(h.shared)) for h in evidence.history)
        regex, model = (
            schema_regex(support, cfg.max_rationale_chars),
            answer_model(support, cfg.max_rationale_chars),
        )
        # A token is at least ~3 characters here; room for the opener, the title, the JSON
        # and the cited id.
        longest = max((len(t) for _, t, _ in support), default=0)
        max_tokens = (cfg.max_rationale_chars + longest) // 3 + 40
    return regex, model, max_tokens


def parse_answer(text: str, model: type[BaseModel] | None) -> tuple[str, list[str]]:
    """(sentence, cited ids) of a valid answer; ValueError naming the problem otherwise."""
    parsed = json.loads(text)
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    if model is None:
        why = parsed.get("rationale", "")
        if not isinstance(why, str) or not why.strip() or set(parsed) != {"rationale"}:
            raise ValueError("malformed rationale")
        return why, []
    answer: Any
    try:
        answer = model.model_validate(parsed)
    except ValidationError as exc:
        raise ValueError(f"answer fails the schema: {exc.errors()[0]['msg']}") from None
    answer = getattr(answer, "root", answer)
    cites = list(answer.cites)
    if len(set(cites)) != len(cites):
        raise ValueError(f"duplicate cites {cites}")
    return str(answer.rationale), cites


def sentence_problems(
    why: str,
    cites: Sequence[str],
    item: Item,
    evidence: Evidence | None,
    req: RankRequest,
    whole_history: bool,
) -> tuple[list[str], list[str]]:
    """(unsupported claims, faults) of a sentence. Claims (``grounding.unsupported_claims``)
    are checked against what the cited items share (with ``whole_history``, the free format,
    against every history item); faults are markup or placeholders, likening the item to
    itself, and grammar faults by rule."""
    ev = evidence or Evidence()
    cited = [(s.title, s.shared) for s in ev.history if s.id in set(cites)]
    extra = " ".join([req.query or "", req.profile or ""])
    if whole_history:
        cited += [(h.title, sorted(attributes(h) & attributes(item))) for h in req.history]
    tags = [a.split(" ", 1)[1] for a in attributes(item) if a.startswith("tag ")]
    year = item.metadata.get("year")
    claims = unsupported_claims(
        why,
        title=item.title,
        genres=[g for g in str(item.metadata.get("genres", "")).split("|") if g],
        year=year if isinstance(year, int) and not isinstance(year, bool) else None,
        tags=tags,
        cited=cited,
        request=ev.request,
        extra=extra,
    )
    faults = [f"markup: {m}" for m in markup_problems(why)]
    own = "|".join(re.escape(f) for f in title_forms(item.title))
    if item.id in cites or re.search(
        rf"\b(?:like|as with|similar to)\s+(?:{own})(?!\w)", why, re.I
    ):
        faults.append("likens the item to itself")
    titles = [f for t in [item.title, *(s.title for s in ev.history)] for f in title_forms(t)]
    faults += [f"grammar: {g}" for g in grammar_faults(why, titles)]
    return claims, faults


def _unsafe(claims: Sequence[str], faults: Sequence[str]) -> list[str]:
    """What must never reach a reader: a link, domain, code or price, or prompt markup."""
    return [c for c in claims if c.split(":", 1)[0] in UNSAFE_KINDS] + [
        f for f in faults if f.startswith("markup")
    ]


def add_rationales(
    llm: LLM,
    cfg: RankingConfig,
    requests: Sequence[RankRequest],
    results: list[tuple[list[RankedItem], Trace]],
    top_r: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> None:
    """Give the top ``top_r`` items of every result a rationale, in place (see module doc).

    A sentence with a fault (markup, a link, a code, a price, a grammar fault, likening the
    item to itself) is recorded in ``Trace.rejected_entries`` and asked again, sampled
    (temperature at least 0.7), up to ``ranking.max_repair_rounds`` times. After the last
    round a sentence with a grammar fault is kept (the harness counts it); one that would
    show markup, a link, a code or a price is not shown: the item keeps no rationale, and
    its last rejected entry says why."""
    jobs = _jobs(cfg, requests, results, top_r, temperature, seed)
    spent = [0.0] * len(results)
    for (_, trace), n in zip(results, range(len(results)), strict=True):
        if not trace.template and any(j.result == n for j in jobs):
            # Retrieval mode: the rationale prompt is the request's only prompt.
            trace.template = cfg.rationale_template
            trace.template_sha256 = template_sha256(cfg.rationale_template)
    todo = jobs
    resample: set[int] = set()  # jobs rejected for their wording: sampled next time
    for attempt in range(cfg.max_repair_rounds + 1):
        if not todo:
            break
        # A request the engine aborts (vLLM's "Failed to advance FSM" ends it with
        # finish_reason "error" and no text), or cuts at max_tokens, is retried with another
        # seed; every failure is recorded.
        reqs = [_attempt_request(j, attempt, resample) for j in todo]
        last = attempt == cfg.max_repair_rounds
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
            if _take(job, out, requests[job.result], ranked, trace, attempt, last, resample):
                failed.append(job)
        todo = failed
    for (_, trace), seconds in zip(results, spent, strict=True):
        if seconds:
            trace.timings.append(StageTiming(stage="llm_rationales", seconds=seconds))


def _jobs(
    cfg: RankingConfig,
    requests: Sequence[RankRequest],
    results: list[tuple[list[RankedItem], Trace]],
    top_r: int,
    temperature: float,
    seed: int,
) -> list[_Job]:
    """One job per item to explain: the top ``top_r`` of every result, in order."""
    jobs: list[_Job] = []
    for n, (req, (ranked, _)) in enumerate(zip(requests, results, strict=True)):
        evidence = {c.item.id: c.evidence for c in req.candidates}
        for pos, entry in enumerate(ranked[:top_r]):
            ev = entry.evidence or evidence.get(entry.item.id)
            gen, model = _request(cfg, req, entry.item, ev, temperature, seed)
            jobs.append(_Job(n, pos, gen, ev, model, gen.hint["format"] == "facts"))
    return jobs


def _attempt_request(job: _Job, attempt: int, resample: set[int]) -> GenRequest:
    """``job``'s request on this attempt: another seed on a retry, sampled (temperature at
    least 0.7) when its last sentence was rejected for its wording."""
    if attempt == 0:
        return job.request
    return replace(
        job.request,
        seed=job.request.seed + 1000 * attempt,
        temperature=max(job.request.temperature, 0.7)
        if id(job) in resample
        else job.request.temperature,
    )


def _take(
    job: _Job,
    out: Generation,
    req: RankRequest,
    ranked: list[RankedItem],
    trace: Trace,
    attempt: int,
    last: bool,
    resample: set[int],
) -> bool:
    """Check one answer and, if it stands, put its rationale on the ranked entry (every
    rejection recorded in ``trace``); True when the job must be asked again."""
    entry = ranked[job.pos]
    try:
        if job.facts:
            assert job.model is not None
            why, cites, _ = rationale_facts.parse(out.text, job.model)
        else:
            why, cites = parse_answer(out.text, job.model)
    except ValueError as exc:
        reason = "truncated rationale" if out.finish_reason == "length" else "malformed rationale"
        _reject(trace, reason, entry, out, str(exc))
        if last and job.request.hint.get("format") == "linked":
            return _floor(job, entry, ranked, trace, attempt, [f"{reason}: {exc}"])
        if last:
            raise RankingValidationError(
                f"rationale for item {entry.item.id!r} is not valid after "
                f"{attempt + 1} attempts: {exc}; last answer {out.text[:200]!r} "
                f"(finish_reason={out.finish_reason}, tokens={out.completion_tokens})"
            ) from None
        return True
    claims, faults = sentence_problems(
        why, cites, entry.item, job.evidence, req, whole_history=job.model is None
    )
    unsafe = _unsafe(claims, faults)
    wording = list(faults)
    linked = job.request.hint.get("format") == "linked"
    if linked:
        # Unsupported claims, prompt speak ("recommended to the user") and negations are asked again
        # too, and after the last round the floor sentence takes the item (:func:`_floor`).
        # (The other formats keep their measured behaviour.)
        wording += [f"unsupported: {c}" for c in claims if c not in unsafe]
        ev = job.evidence or Evidence()
        titles = [entry.item.title, *(s.title for s in ev.history)]
        wording += voice_faults(why, titles) + negation_faults(why, titles)
    if wording or unsafe:
        reason = "unsafe rationale" if unsafe else "faulty rationale"
        _reject(trace, reason, entry, out, "; ".join([*unsafe, *wording]))
        if not last:
            resample.add(id(job))
            return True
        if linked:
            return _floor(job, entry, ranked, trace, attempt, [*unsafe, *wording])
        if unsafe:  # never shown; the rejected entry above says why
            return False
    update = {"rationale": why, "cites": cites, "unsupported_terms": claims}
    ranked[job.pos] = entry.model_copy(update={**update, "evidence": job.evidence})
    return False


def _floor(
    job: _Job,
    entry: RankedItem,
    ranked: list[RankedItem],
    trace: Trace,
    attempt: int,
    faults: Sequence[str],
) -> bool:
    """The linked format after its last round: the floor sentence (:func:`floor_sentence`)
    in place of the model's, said in ``trace.notes``; no rationale when there is none."""
    why, cites = floor_sentence(entry.item, job.evidence or Evidence())
    trace.notes.append(
        f"rationale for item {entry.item.id}: {attempt + 1} sentences failed the checks "
        f"(last: {faults[0][:80]}); "
        + ("the evidence's template sentence is shown" if why else "no rationale is shown")
    )
    if why:
        ranked[job.pos] = entry.model_copy(
            update={
                "rationale": why,
                "cites": cites,
                "unsupported_terms": [],
                "evidence": job.evidence,
            }
        )
    return False


def _reject(trace: Trace, reason: str, entry: RankedItem, out: Generation, detail: str) -> None:
    trace.rejected_entries.append(
        {
            "reason": reason,
            "item_id": entry.item.id,
            "finish_reason": out.finish_reason,
            "detail": detail[:200],
            "entry": out.text[:200],
        }
    )
