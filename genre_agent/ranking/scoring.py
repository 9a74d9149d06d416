"""Scoring mode: rank candidates by the log-probability of their one-token labels.

One prompt lists the candidates as ``[A] title: text``; one forward pass gives the logprob of
each label at the answer position (renormalised over the labels). No text is generated, so
this is much faster than listwise generation. Details (windows, permutations, stability,
fallback, fusion) are in docs/ranking.md; in short:

* Windows: more than ``window_size`` candidates are split into near-equal windows. Each
  window's logprobs are centred by ``+ log(window length)`` (0 = the uniform guess), so
  windows of different sizes are comparable.
* Position bias: ``permutations`` = B orders (the retrieval order, then seeded shuffles).
  Aggregate ``mean`` averages centred scores; ``borda`` averages the points
  ``(n - 1 - rank) / (n - 1)``. Each item's rank variance across orders is reported, and the
  list's stability is the mean Spearman correlation between each order's ranking and the
  aggregate. With ``unstable_fallback`` an unstable list is returned in retrieval order and
  ``Trace.fallback`` says why.
* Fusion: ``w * minmax(LLM score) + (1 - w) * minmax(retrieval score)``.
* Rationales: only the top ``rationale_top_r`` items get one, from one batched, regex
  constrained generation; the answer is re-validated and never patched.
"""

from __future__ import annotations

import json
import math
import random
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from genre_agent.config import RankingConfig
from genre_agent.errors import RankingValidationError
from genre_agent.llm.base import LLM, LabelScorer, LabelScores, Message, ScoreRequest
from genre_agent.prompting import RenderedPrompt, render
from genre_agent.ranking.base import Needs, RankerContext, RankRequest, history_view
from genre_agent.ranking.calibration import calibrate, placeholder_candidates
from genre_agent.ranking.rationales import add_rationales
from genre_agent.types import Candidate, RankedItem, StageTiming, Trace

LABELS: tuple[str, ...] = tuple(string.ascii_uppercase + string.ascii_lowercase)


def split_windows(n: int, size: int) -> list[range]:
    """Split positions 0..n-1 into ceil(n / size) contiguous windows of near-equal length."""
    if n <= 0:
        return []
    count = math.ceil(n / size)
    base, extra = divmod(n, count)
    out, start = [], 0
    for w in range(count):
        length = base + (1 if w < extra else 0)
        out.append(range(start, start + length))
        start += length
    return out


def permutation_orders(ids: Sequence[str], b: int, seed: int) -> list[list[int]]:
    """B candidate orders as index lists: the given order first, then seeded shuffles.

    The shuffle seed depends on ``seed``, ``b`` and the candidate ids, so a request is
    reproducible whatever else is in the batch.
    """
    n = len(ids)
    orders = [list(range(n))]
    for k in range(1, b):
        rng = random.Random(f"{seed}|{k}|{'|'.join(ids)}")
        order = list(range(n))
        rng.shuffle(order)
        orders.append(order)
    return orders


def ranks_from_scores(scores: Sequence[float]) -> list[int]:
    """0-based rank of each index, best (highest score) first; ties keep index order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def aggregate(per_order: Sequence[Sequence[float]], how: str) -> list[float]:
    """Combine per-order item scores (rows: orders, columns: items in a fixed item order).

    mean:  s_i = (1/B) sum_b score_b,i
    borda: s_i = (1/B) sum_b (n - 1 - rank_b,i) / (n - 1), rank 0 = best
    """
    b = len(per_order)
    n = len(per_order[0]) if per_order else 0
    if how == "mean":
        return [sum(row[i] for row in per_order) / b for i in range(n)]
    if how == "borda":
        pts = [0.0] * n
        for row in per_order:
            for i, r in enumerate(ranks_from_scores(row)):
                pts[i] += (n - 1 - r) / max(n - 1, 1)
        return [p / b for p in pts]
    raise ValueError(f"unknown aggregate {how!r}")


def rank_variance(per_order: Sequence[Sequence[float]]) -> list[float]:
    """Population variance of each item's rank across orders (0 = same rank every time)."""
    ranks = [ranks_from_scores(row) for row in per_order]
    n = len(ranks[0]) if ranks else 0
    out = []
    for i in range(n):
        col = [r[i] for r in ranks]
        mean = sum(col) / len(col)
        out.append(sum((x - mean) ** 2 for x in col) / len(col))
    return out


def spearman(a: Sequence[int], b: Sequence[int]) -> float:
    """Spearman's rho of two rank vectors without ties: 1 - 6 sum d^2 / (n (n^2 - 1))."""
    n = len(a)
    if n < 2:
        return 1.0
    d2 = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def stability(per_order: Sequence[Sequence[float]], combined: Sequence[float]) -> float:
    """Mean Spearman rho between each order's ranking and the aggregated ranking."""
    agg = ranks_from_scores(combined)
    rhos = [spearman(ranks_from_scores(row), agg) for row in per_order]
    return sum(rhos) / len(rhos)


def minmax(values: Sequence[float]) -> list[float]:
    """(v - min) / (max - min); all zeros when the values are all equal."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12:
        return [0.0] * len(values)
    return [(v - lo) / (hi - lo) for v in values]


def fuse(llm: Sequence[float], retrieval: Sequence[float], w: float) -> list[float]:
    """w * minmax(llm) + (1 - w) * minmax(retrieval)."""
    a, b = minmax(llm), minmax(retrieval)
    return [w * x + (1 - w) * y for x, y in zip(a, b, strict=True)]


@dataclass
class _Job:
    req: RankRequest
    ids: list[str]
    orders: list[list[int]]
    # (order index, window positions) of each ScoreRequest of this job, in request order.
    passes: list[tuple[int, list[int]]] = field(default_factory=list)
    prompts: list[RenderedPrompt] = field(default_factory=list)
    # Index into the batch's ScoreRequests of each pass, and of its content-free pass.
    req_idx: list[int] = field(default_factory=list)
    cal_idx: list[int | None] = field(default_factory=list)


def _label_scorer(llm: object) -> LabelScorer | None:
    """The engine's label scorer. A wrapper (such as the eval harness's CachingLLM) is used
    itself when its inner engine scores; otherwise the inner engine is looked through."""
    inner = getattr(llm, "inner", None)
    if inner is not None and not isinstance(inner, LabelScorer):
        return None
    if isinstance(llm, LabelScorer):
        return llm
    return inner if isinstance(inner, LabelScorer) else None


class ScoringRanker:
    """Ranks by one-token label logprobs; see the module docstring. Used on its own it
    explains its top ``rationale_top_r`` items; the service runs it with 0 and explains in
    its explain stage."""

    needs: ClassVar[Needs] = Needs(llm=True, evidence_first=True)
    label: ClassVar[str] = "llm:scoring"

    @classmethod
    def from_context(cls, ctx: RankerContext) -> ScoringRanker:
        return cls(ctx.llm(), ctx.config)

    def __init__(self, llm: LLM, cfg: RankingConfig | None = None) -> None:
        self.llm = llm
        self.cfg = cfg or RankingConfig(mode="scoring")

    def _render(
        self, req: RankRequest, cands: Sequence[Candidate], content_free: bool = False
    ) -> RenderedPrompt:
        labels = LABELS[: len(cands)]
        return render(
            self.cfg.scoring_template,
            query=req.query,
            profile=req.profile,
            history=history_view(req.history),
            candidates=placeholder_candidates(labels)
            if content_free
            else [
                {"label": lab, "id": c.item.id, "title": c.item.title, "text": c.item.text}
                for lab, c in zip(labels, cands, strict=True)
            ],
            labels=list(labels),
            max_item_chars=self.cfg.max_item_chars,
        )

    def _plan(
        self, requests: Sequence[RankRequest], seed: int
    ) -> tuple[list[_Job], list[ScoreRequest]]:
        jobs: list[_Job] = []
        score_reqs: list[ScoreRequest] = []
        for req in requests:
            ids = [c.item.id for c in req.candidates]
            if len(set(ids)) != len(ids):
                raise RankingValidationError("candidate ids are not distinct")
            job = _Job(req, ids, permutation_orders(ids, self.cfg.permutations, seed))
            # Content-free passes depend only on the window length: one per length per job.
            cal_for_len: dict[int, int] = {}
            for o, order in enumerate(job.orders):
                for window in split_windows(len(order), self.cfg.window_size):
                    positions = [order[p] for p in window]
                    cands = [req.candidates[i] for i in positions]
                    prompt = self._render(req, cands)
                    job.passes.append((o, positions))
                    job.prompts.append(prompt)
                    job.req_idx.append(len(score_reqs))
                    score_reqs.append(
                        ScoreRequest(
                            messages=(
                                Message("system", prompt.system),
                                Message("user", prompt.user),
                            ),
                            labels=LABELS[: len(cands)],
                            hint={"task": "score", "candidate_ids": [ids[i] for i in positions]},
                        )
                    )
                    if self.cfg.calibration == "content_free":
                        n_lab = len(cands)
                        if n_lab not in cal_for_len:
                            cf = self._render(req, cands, content_free=True)
                            cal_for_len[n_lab] = len(score_reqs)
                            score_reqs.append(
                                ScoreRequest(
                                    messages=(
                                        Message("system", cf.system),
                                        Message("user", cf.user),
                                    ),
                                    labels=LABELS[:n_lab],
                                    hint={"task": "score", "candidate_ids": [], "calibration": 1},
                                )
                            )
                        job.cal_idx.append(cal_for_len[n_lab])
                    else:
                        job.cal_idx.append(None)
            jobs.append(job)
        return jobs, score_reqs

    def rank_many(
        self, requests: Sequence[RankRequest], temperature: float = 0.0, seed: int = 0
    ) -> list[tuple[list[RankedItem], Trace]]:
        """Rank many requests: one batched scoring call, then one batched rationale call."""
        scorer = _label_scorer(self.llm)
        if scorer is None:
            raise RankingValidationError(
                f"ranking.mode 'scoring' needs an engine with score_labels; "
                f"{type(self.llm).__name__} has none"
            )
        t0 = time.perf_counter()
        jobs, score_reqs = self._plan(requests, seed)
        render_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scored = scorer.score_labels(score_reqs) if score_reqs else []
        score_s = time.perf_counter() - t0
        _check_scores(score_reqs, scored)
        results = [
            self._result(job, score_reqs, scored, render_s, score_s, len(jobs)) for job in jobs
        ]
        if self.cfg.rationale_top_r > 0:
            add_rationales(
                self.llm,
                self.cfg,
                [job.req for job in jobs],
                results,
                self.cfg.rationale_top_r,
                temperature,
                seed,
            )
        return results

    def _result(
        self,
        job: _Job,
        score_reqs: Sequence[ScoreRequest],
        scored: Sequence[LabelScores],
        render_s: float,
        score_s: float,
        n_jobs: int,
    ) -> tuple[list[RankedItem], Trace]:
        """One request's ranking and trace from its scored passes."""
        n = len(job.ids)
        b = len(job.orders)
        per_order, raw_outputs, prompt_tokens, n_cal = _pass_scores(job, score_reqs, scored)
        combined = aggregate(per_order, self.cfg.aggregate) if n else []
        variances: list[float | None] = (
            list(rank_variance(per_order)) if b > 1 and n else [None] * n
        )
        stab = stability(per_order, combined) if b > 1 and n else None
        retrieval = [c.score for c in job.req.candidates]
        fused = fuse(combined, retrieval, self.cfg.fusion_weight) if n else []
        fallback = None
        if self.cfg.unstable_fallback and stab is not None and stab < self.cfg.stability_threshold:
            fallback = (
                f"unstable: stability {stab:.3f} < {self.cfg.stability_threshold} over "
                f"{b} permutations; returned the retrieval order"
            )
            final = minmax(retrieval)
        else:
            final = fused
        order = sorted(range(n), key=lambda i: (-final[i], i))[: min(job.req.k, n)]
        ranked = [
            RankedItem(
                rank=r + 1,
                item=job.req.candidates[i].item,
                score=final[i],
                llm_score=combined[i],
                rank_variance=variances[i],
            )
            for r, i in enumerate(order)
        ]
        first = job.prompts[0] if job.prompts else None
        trace = Trace(
            candidates=job.req.candidates,
            template=self.cfg.scoring_template,
            template_sha256=first.template_sha256 if first else "",
            prompt_sha256=first.sha256 if first else "",
            model_id=self.llm.model_id,
            model_revision=self.llm.revision,
            prompt_tokens=prompt_tokens,
            llm_calls=len(job.passes) + n_cal,
            raw_outputs=raw_outputs,
            stability=stab,
            fallback=fallback,
            timings=[
                StageTiming(stage="render", seconds=render_s / max(n_jobs, 1)),
                StageTiming(stage="llm", seconds=score_s / max(n_jobs, 1)),
            ],
        )
        return ranked, trace


def _check_scores(score_reqs: Sequence[ScoreRequest], scored: Sequence[LabelScores]) -> None:
    """One finite logprob per asked label, for every request."""
    if len(scored) != len(score_reqs):
        raise RankingValidationError(
            f"engine returned {len(scored)} score sets for {len(score_reqs)} requests"
        )
    for sreq, res in zip(score_reqs, scored, strict=True):
        if set(res.logprobs) != set(sreq.labels):
            raise RankingValidationError(
                f"engine scored labels {sorted(res.logprobs)}, expected {list(sreq.labels)}"
            )
        if not all(math.isfinite(v) for v in res.logprobs.values()):
            raise RankingValidationError(f"non-finite label logprobs: {res.logprobs}")


def _pass_scores(
    job: _Job, score_reqs: Sequence[ScoreRequest], scored: Sequence[LabelScores]
) -> tuple[list[list[float]], list[str], int, int]:
    """(per-order scores of the job's items, raw outputs, prompt tokens, content-free passes):
    each pass's (calibrated) label logprobs, centred on the uniform guess."""
    n = len(job.ids)
    b = len(job.orders)
    per_order = [[0.0] * n for _ in range(b)]
    raw_outputs, prompt_tokens = [], 0
    for (o, positions), ri, ci in zip(job.passes, job.req_idx, job.cal_idx, strict=True):
        labs, res = score_reqs[ri].labels, scored[ri]
        logprobs = res.logprobs
        raw: dict[str, object] = {"order": o, "logprobs": res.logprobs}
        if ci is not None:
            logprobs = calibrate(res.logprobs, scored[ci].logprobs)
            raw["content_free"] = scored[ci].logprobs
        centre = math.log(len(labs))
        for lab, i in zip(labs, positions, strict=True):
            per_order[o][i] = logprobs[lab] + centre
        prompt_tokens += res.prompt_tokens
        raw_outputs.append(json.dumps(raw))
    cal_reqs = {ci for ci in job.cal_idx if ci is not None}
    prompt_tokens += sum(scored[ci].prompt_tokens for ci in cal_reqs)
    return per_order, raw_outputs, prompt_tokens, len(cal_reqs)
