"""The lines of results.jsonl: one per (system, seed, user), with its metrics, the
variant's identity, the rationales with their explanation metrics, and the counterfactual
rank drops (moved from genre_eval.runner)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from genre_agent.catalog.items import Item
from genre_agent.errors import GenreError
from genre_agent.service.recommender import Recommender
from genre_agent.service.requests import RecRequest
from genre_agent.types import Recommendation
from genre_eval.datasets import Dataset
from genre_eval.explain_metrics import (
    explanation_entry,
    mean_or_none,
    rank_drop,
    removals,
)
from genre_eval.explain_metrics import user_metrics as explain_user_metrics
from genre_eval.metrics import user_metrics
from genre_eval.protocols import EvalCase, history_rows


def record(
    system: str,
    kind: str,
    seed: int,
    case: EvalCase,
    ranked: list[str],
    ks: Sequence[int],
    candidates: Sequence[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    cands = case.candidates if candidates is None else tuple(candidates)
    out = {
        "system": system,
        "kind": kind,
        "seed": seed,
        "user_id": case.user_id,
        "split": case.split,
        "target": case.target,
        # Length of the history the systems saw (after protocol.max_history): segments.
        "history_len": len(case.history),
        "ranked": ranked,
        "metrics": user_metrics(ranked, {case.target}, cands, ks),
        **extra,
    }
    if candidates is not None:  # two-stage: the system's own candidates
        out["candidate_recall"] = float(case.target in set(cands))
        out["n_candidates"] = len(cands)
    return out


def identity(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What every result line of a variant records about its config, model and data."""
    return {
        k: meta[k]
        for k in ("config_sha256", "model_id", "model_revision", "dataset_sha256", "variant")
    }


def rejections(entries: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in entries:
        reason = str(e.get("reason", "invalid"))
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def explanation_fields(ds: Dataset, case: EvalCase, out: Recommendation) -> dict[str, Any]:
    """The rationales of ``out`` with their cites and evidence, and their per-user
    metrics (``eval/genre_eval/explain_metrics.py``); nothing when no item has a rationale."""
    entries = [explanation_entry(it) for it in out.items if it.rationale is not None]
    if not entries:
        return {}
    reasons = rejections(out.trace.rejected_entries)
    truncated = reasons.get("truncated rationale", 0)
    titles = [ds.items[h].title for h in case.history]
    return {
        "explanations": entries,
        "rationale_attempts_truncated": truncated,
        "explain_metrics": explain_user_metrics(
            entries,
            list(case.history),
            titles,
            truncated,
            truncated + reasons.get("malformed rationale", 0),
        ),
    }


def counterfactual(
    ds: Dataset,
    seed: int,
    rec: Recommender | None,
    case: EvalCase,
    out: Recommendation,
    profile: str,
    plain_history: bool,
) -> dict[str, Any]:
    """Mean rank drop of the explained items when the history items their rationale cites
    are removed, and when as many random history items are (seeded by user id): the
    same candidates re-ranked by ``rec``, the variant's config without rationales, and
    compared with its order on the whole history. None when ``rec`` is None (an LLM
    ranking mode) or no explained item cites the visible history; a re-ranking that
    fails gives None and ``cf_error``."""
    none: dict[str, Any] = {"cf_drop_cited": None, "cf_drop_random": None}
    explained = [(it.item.id, it.cites) for it in out.items if it.rationale is not None]
    plan = removals(explained, case.history, f"{seed}:{case.user_id}")
    if rec is None or not plan:
        return none
    rows = history_rows(ds, case)
    cands = [c.item for c in out.trace.candidates]

    def request(drop: Sequence[str]) -> tuple[list[Item], RecRequest]:
        gone = set(drop)
        shown: list[Any] = (
            [ds.items[h] for h in case.history if h not in gone]
            if plain_history
            else [r for r in rows if r.item_id not in gone]
        )
        return cands, RecRequest(
            user_id=case.user_id,
            history=shown,
            k=min(len(cands), 100),
            profile=profile,
            profile_scope="config",
        )

    jobs = [request(())]
    for _, cited, rand in plan:
        jobs += [request(cited), request(rand)]
    try:
        outs = rec.rank_many(jobs)
    except GenreError as exc:
        return {**none, "cf_error": str(exc)[:500]}
    orders = [[it.item.id for it in o.items] for o in outs]
    base = orders[0]
    # An item past the first 100 of the full-history order has no rank to drop from.
    kept = [(n, item) for n, (item, _, _) in enumerate(plan) if item in base]
    by_cited = [float(rank_drop(base, orders[1 + 2 * n], item)) for n, item in kept]
    by_random = [float(rank_drop(base, orders[2 + 2 * n], item)) for n, item in kept]
    return {
        "cf_drop_cited": mean_or_none(by_cited),
        "cf_drop_random": mean_or_none(by_random),
    }


def result_lines(
    ds: Dataset,
    ks: Sequence[int],
    two_stage: bool,
    name: str,
    kind: str,
    seed: int,
    batch: Sequence[EvalCase],
    outs: Sequence[Any],
    wall: float,
    common: Mapping[str, Any],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One batch's result lines (``outs[i]``: ``batch[i]``'s Recommendation or error)."""
    lines = []
    for case, out in zip(batch, outs, strict=True):
        more = {**common, **(extra or {}).get(case.user_id, {})}
        ranked: list[str] = []
        cand_ids: list[str] = []
        if isinstance(out, Exception):
            fields: dict[str, Any] = {
                "failed": True,
                "error": str(out)[:500],
                "latency_s": wall,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "rejected": {},
                "template_sha256": "",
            }
        else:
            trace = out.trace
            cand_ids = [c.item.id for c in trace.candidates]
            top = [r.item.id for r in out.items]
            # Unranked candidates follow in presented order (label-blind): AUC is defined.
            ranked = top + [i for i in cand_ids if i not in set(top)]
            more.update(explanation_fields(ds, case, out))
            fields = {
                "failed": False,
                "latency_s": sum(t.seconds for t in trace.timings),
                "prompt_tokens": trace.prompt_tokens,
                "completion_tokens": trace.completion_tokens,
                "rejected": rejections(trace.rejected_entries),
                "llm_calls": trace.llm_calls,
                "template_sha256": trace.template_sha256,
            }
        lines.append(
            record(
                name,
                kind,
                seed,
                case,
                ranked,
                ks,
                candidates=cand_ids if two_stage else None,
                wall_s=wall,
                **fields,
                **more,
            )
        )
    return lines


def add_counterfactuals(
    ds: Dataset,
    seed: int,
    rec: Recommender | None,
    cases: Sequence[EvalCase],
    by_user: Mapping[str, Any],
    texts: Mapping[str, str],
    plain_history: bool,
    extra: Mapping[str, dict[str, Any]],
) -> None:
    """Add the counterfactual rank drops of every case whose answer has a rationale to its
    ``extra`` fields."""
    for c in cases:
        out = by_user[c.user_id]
        if isinstance(out, Recommendation) and any(it.rationale is not None for it in out.items):
            extra[c.user_id].update(
                counterfactual(ds, seed, rec, c, out, texts.get(c.user_id, ""), plain_history)
            )
