"""Listwise reranking with constrained, re-validated JSON rationales.

How distinctness is guaranteed without trusting the decoder:

1. The first pass constrains the answer with a regex (xgrammar in vLLM, Outlines for
   transformers) to exactly ``k`` entries ``{"item_id": <one of the candidate ids>,
   "rationale": <8..N plain chars>}``. A regex cannot say "all ids distinct", so
2. the answer is re-validated entry by entry. Entries are accepted up to the first one that is
   off-list, duplicated or malformed; every rejected entry is recorded in the trace.
3. If fewer than ``k`` were accepted, the model continues its own accepted prefix, now
   constrained to the ids not yet chosen ("repair round"). The first new entry is therefore
   always new, so each round makes progress. Rounds are counted in the trace.
4. If ``max_repair_rounds`` runs out, RankingValidationError is raised. Nothing is filled in.

Grounding: the prompt tells the model to cite only what the data says. After generation, each
rationale is checked: capitalised names and numbers that appear in neither the candidate's
text, the user's history nor the query are listed as ``unsupported_terms`` on the item.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from genre_agent.config import RankingConfig
from genre_agent.errors import RankingValidationError
from genre_agent.llm.base import LLM, GenRequest, Message
from genre_agent.prompting import RenderedPrompt, render
from genre_agent.ranking.base import (
    Needs,
    RankerContext,
    RankRequest,
    history_view,
    unsupported_terms,
)
from genre_agent.ranking.rationales import add_rationales
from genre_agent.types import RankedItem, StageTiming, Trace

PREFIX = '{"items": ['
_ENTRY_RE = re.compile(r'\{"item_id": "(?P<id>[^"]*)", "rationale": "(?P<why>[^"\\]*)"\}')


def _id_alternation(ids: Sequence[str]) -> str:
    # Ids are restricted to [A-Za-z0-9_.:-] (see Item); only '.' is special outside classes.
    return "(" + "|".join(i.replace(".", r"\.") for i in ids) + ")"


def entry_regex(ids: Sequence[str], max_chars: int) -> str:
    return (
        r'\{"item_id": "'
        + _id_alternation(ids)
        + r'", "rationale": "[^"\\\n\r\t]{8,'
        + str(max_chars)
        + r'}"\}'
    )


def list_regex(ids: Sequence[str], slots: int, max_chars: int, with_prefix: bool) -> str:
    """Regex for ``slots`` more entries and the closing brackets."""
    entry = entry_regex(ids, max_chars)
    body = entry + (f"(, {entry}){{{slots - 1}}}" if slots > 1 else "")
    head = r'\{"items": \[' if with_prefix else ""
    return head + body + r"\]\}"


def output_model(candidate_ids: Sequence[str], k: int, max_chars: int) -> type[BaseModel]:
    """The pydantic schema of a ranking answer (ids are an enum of the candidate ids)."""
    from typing import Literal

    id_type = Literal[tuple(candidate_ids)]  # type: ignore[valid-type]
    entry = create_model(
        "RankedEntry",
        __config__=ConfigDict(extra="forbid"),
        item_id=(id_type, ...),  # type: ignore[arg-type]
        rationale=(str, Field(min_length=1, max_length=max_chars)),
    )
    return create_model(
        "RankingAnswer",
        __config__=ConfigDict(extra="forbid"),
        items=(list[entry], Field(min_length=k, max_length=k)),  # type: ignore[valid-type]
    )


def ids_regex(ids: Sequence[str], slots: int, with_prefix: bool) -> str:
    """Regex for ``slots`` more quoted ids of a ``{"ranking": [...]}`` answer."""
    entry = '"' + _id_alternation(ids) + '"'
    body = entry + (f"(, {entry}){{{slots - 1}}}" if slots > 1 else "")
    head = r'\{"ranking": \[' if with_prefix else ""
    return head + body + r"\]\}"


@dataclass(frozen=True)
class _Format:
    """How one ranked entry is written, parsed and re-serialised."""

    name: str
    prefix: str
    key: str

    def regex(self, ids: Sequence[str], slots: int, max_chars: int, first: bool) -> str:
        if self.name == "inline":
            return list_regex(ids, slots, max_chars, with_prefix=first)
        return ids_regex(ids, slots, with_prefix=first)

    def parse(self, text: str) -> list[Any]:
        """Entries of a complete answer; ValueError if it is not one."""
        parsed = json.loads(text)
        entries = parsed.get(self.key) if isinstance(parsed, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"no {self.key!r} list")
        return entries

    def salvage(self, text: str) -> list[Any]:
        """Well-formed entries, in order, of a truncated or malformed answer."""
        if self.name == "inline":
            return [{"item_id": m["id"], "rationale": m["why"]} for m in _ENTRY_RE.finditer(text)]
        body = text.split("[", 1)[1] if "[" in text else ""
        return re.findall(r'"([^"\\]*)"', body)

    def entry(self, raw: Any) -> tuple[Any, Any, bool]:
        """(item_id, rationale, well-formed?)"""
        if self.name == "inline":
            ok = isinstance(raw, dict) and set(raw) == {"item_id", "rationale"}
            ok = ok and isinstance(raw["item_id"], str) and isinstance(raw["rationale"], str)
            why = raw.get("rationale") if isinstance(raw, dict) else None
            return (
                (raw.get("item_id") if isinstance(raw, dict) else None),
                why,
                bool(ok and why and why.strip()),
            )
        return raw, "", isinstance(raw, str)

    def dump(self, item_id: str, why: str) -> str:
        if self.name == "inline":
            return json.dumps({"item_id": item_id, "rationale": why}, ensure_ascii=False)
        return json.dumps(item_id)


INLINE = _Format("inline", PREFIX, "items")
IDS = _Format("ids", '{"ranking": [', "ranking")


@dataclass
class _State:
    req: RankRequest
    prompt: RenderedPrompt
    ids: list[str]
    k: int
    fmt: _Format = INLINE
    chosen: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    trace: Trace | None = None
    rejected: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    rounds: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def done(self) -> bool:
        return len(self.chosen) >= self.k


class ListwiseRanker:
    """Listwise generation, in one of two styles (``ranking.listwise_style``):

    - ``two_phase`` (default): the model first writes the ranked ids only
      (``{"ranking": [ids]}``, constrained and repaired as above). Then the rationales for the
      k chosen items are generated as k short, independent, batched requests, each
      constrained to ``{"rationale": "..."}`` and each looking at one item and the user. The
      ranked list is ready after the first phase; each rationale is about its own item.
    - ``inline``: one answer of ``{"items": [{"item_id", "rationale"}]}`` entries.

    Each LLM round of either phase is one batched engine call across all requests.
    """

    needs: ClassVar[Needs] = Needs(llm=True, evidence_first=True, explains_inline=True)
    label: ClassVar[str] = "llm:listwise"

    @classmethod
    def from_context(cls, ctx: RankerContext) -> ListwiseRanker:
        return cls(ctx.llm(), ctx.config)

    def __init__(self, llm: LLM, cfg: RankingConfig | None = None) -> None:
        self.llm = llm
        self.cfg = cfg or RankingConfig()  # type: ignore[call-arg]
        self.fmt = INLINE if self.cfg.listwise_style == "inline" else IDS

    def _render(self, req: RankRequest, k: int) -> RenderedPrompt:
        template = self.cfg.template
        if self.fmt is IDS and template == "rerank_listwise":
            template = "rerank_listwise_ids"
        return render(
            template,
            query=req.query,
            profile=req.profile,
            history=history_view(req.history),
            candidates=[
                {"id": c.item.id, "title": c.item.title, "text": c.item.text}
                for c in req.candidates
            ],
            k=k,
            max_item_chars=self.cfg.max_item_chars,
        )

    def _gen_request(self, st: _State, temperature: float, seed: int) -> GenRequest:
        used = {i for i, _ in st.chosen}
        remaining = [i for i in st.ids if i not in used]
        slots = st.k - len(st.chosen)
        first = not st.chosen
        per_entry = self.cfg.max_rationale_chars // 2 + 40 if st.fmt is INLINE else 12
        return GenRequest(
            messages=(Message("system", st.prompt.system), Message("user", st.prompt.user)),
            regex=st.fmt.regex(remaining, slots, self.cfg.max_rationale_chars, first),
            assistant_prefix="" if first else st.text,
            max_tokens=slots * per_entry + 16,
            temperature=temperature,
            seed=seed + st.rounds,
            hint={
                "task": "rank",
                "format": st.fmt.name,
                "candidate_ids": remaining,
                "slots": slots,
                "k": st.k,
            },
        )

    def _absorb(self, st: _State, generated: str) -> None:
        """Accept valid entries of the model's answer up to the first bad one."""
        full = generated if not st.chosen else st.text + generated
        st.raw.append(generated)
        try:
            entries = st.fmt.parse(full)
        except (ValueError, KeyError, TypeError) as exc:
            # Not valid JSON as a whole (truncated, or a server that ignored the constraint):
            # read the well-formed entries in order and let the model continue from them.
            entries = st.fmt.salvage(full)
            st.rejected.append({"reason": "malformed", "detail": str(exc)[:200]})
        allowed = set(st.ids)
        accepted: list[tuple[str, str]] = []
        seen: set[str] = set()
        for raw in entries:
            item_id, why, ok = st.fmt.entry(raw)
            reason = None
            if not ok:
                reason = "malformed"
            elif item_id not in allowed:
                reason = "off-list"
            elif item_id in seen:
                reason = "duplicate"
            if reason:
                st.rejected.append({"reason": reason, "entry": raw})
                break
            seen.add(item_id)
            accepted.append((str(item_id), str(why)))
            if len(accepted) >= st.k:
                break
        st.chosen = accepted
        st.text = (
            st.fmt.prefix
            + ", ".join(st.fmt.dump(i, w) for i, w in accepted)
            + (", " if accepted else "")
        )

    def _rank_rounds(self, states: list[_State], temperature: float, seed: int) -> list[float]:
        llm_s = [0.0] * len(states)
        for round_no in range(self.cfg.max_repair_rounds + 1):
            todo = [i for i, s in enumerate(states) if not s.done and s.k > 0]
            if not todo:
                break
            for i in todo:
                states[i].rounds = round_no
            gen_reqs = [self._gen_request(states[i], temperature, seed) for i in todo]
            t0 = time.perf_counter()
            outs = self.llm.generate(gen_reqs)
            elapsed = time.perf_counter() - t0
            for i, out in zip(todo, outs, strict=True):
                s = states[i]
                s.calls += 1
                s.prompt_tokens += out.prompt_tokens
                s.completion_tokens += out.completion_tokens
                # Wall time of the batched call: what each request in it waited.
                llm_s[i] += elapsed
                self._absorb(s, out.text)
        for s in states:
            if not s.done and s.k > 0:
                raise RankingValidationError(
                    f"LLM answer still invalid after {self.cfg.max_repair_rounds} repair rounds: "
                    f"{len(s.chosen)}/{s.k} valid entries; rejected: {s.rejected[-3:]}"
                )
        return llm_s

    def rank_many(
        self, requests: Sequence[RankRequest], temperature: float = 0.0, seed: int = 0
    ) -> list[tuple[list[RankedItem], Trace]]:
        """Rank many requests; each LLM round is one batched engine call."""
        states: list[_State] = []
        t_render = time.perf_counter()
        for req in requests:
            ids = [c.item.id for c in req.candidates]
            if len(set(ids)) != len(ids):
                raise RankingValidationError("candidate ids are not distinct")
            k = min(req.k, len(ids))
            states.append(_State(req, self._render(req, k), ids, k, fmt=self.fmt))
        render_s = time.perf_counter() - t_render
        rank_s = self._rank_rounds(states, temperature, seed)
        results = [
            self._result(st, r_s, render_s / max(len(states), 1))
            for st, r_s in zip(states, rank_s, strict=True)
        ]
        if self.fmt is IDS:  # two_phase: the ranked ids are explained in a second pass
            add_rationales(
                self.llm,
                self.cfg,
                [s.req for s in states],
                results,
                top_r=max((s.k for s in states), default=0),
                temperature=temperature,
                seed=seed,
            )
        _check_schema(states, results)
        return results

    def _result(self, s: _State, r_s: float, render_s: float) -> tuple[list[RankedItem], Trace]:
        """One request's ranking (its assembled answer) and trace; ``render_s``: its share of
        the render time, ``r_s``: of the rank rounds."""
        ids_in = [i for i, _ in s.chosen]
        if len(set(ids_in)) != len(ids_in):
            raise RankingValidationError(f"assembled answer has duplicate ids: {ids_in}")
        by_id = {c.item.id: c for c in s.req.candidates}
        ranked = []
        for rank, (item_id, why) in enumerate(s.chosen, start=1):
            item = by_id[item_id].item
            # Inline answers may name the request, the profile, any history item and
            # the item itself.
            ev = " ".join(
                [s.req.query or "", s.req.profile or "", item.title, item.text]
                + [f"{h.title} {h.metadata.get('genres', '')}" for h in s.req.history]
                + [str(item.metadata.get("genres", ""))]
            )
            ranked.append(
                RankedItem(
                    rank=rank,
                    item=item,
                    score=None,
                    rationale=why or None,
                    unsupported_terms=unsupported_terms(why, ev) if why else [],
                )
            )
        timings = [StageTiming(stage="render", seconds=render_s)]
        timings.append(StageTiming(stage="llm_rank", seconds=r_s))
        trace = Trace(
            candidates=s.req.candidates,
            template=s.prompt.template,
            template_sha256=s.prompt.template_sha256,
            prompt_sha256=s.prompt.sha256,
            model_id=self.llm.model_id,
            model_revision=self.llm.revision,
            prompt_tokens=s.prompt_tokens,
            completion_tokens=s.completion_tokens,
            llm_calls=s.calls,
            repair_rounds=max(s.rounds, 0),
            rejected_entries=s.rejected,
            raw_outputs=s.raw,
            timings=timings,
        )
        return ranked, trace


def _check_schema(
    states: Sequence[_State], results: Sequence[tuple[list[RankedItem], Trace]]
) -> None:
    for s, (ranked, _) in zip(states, results, strict=True):
        # Final check against the pydantic schema, so a bug here cannot pass silently.
        # A rationale withheld as unsafe (ranking.rationales; its rejected entry says why)
        # stays None for the caller; the schema check is about the ids.
        answer = {
            "items": [
                {"item_id": r.item.id, "rationale": r.rationale or "(withheld)"} for r in ranked
            ]
        }
        try:
            if s.ids:  # no candidates (e.g. filters matched nothing): an empty ranking
                output_model(s.ids, s.k, 10_000).model_validate(answer)
        except ValidationError as exc:
            raise RankingValidationError(f"assembled answer failed schema: {exc}") from exc
