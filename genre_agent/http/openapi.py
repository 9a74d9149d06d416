"""openapi.json with a description on every field.

The HTTP layer's own models describe their fields where they are declared
(http/schemas.py). The shared result models (genre_agent.types, the chat models) keep
comments for their readers in Python; their descriptions for API users are here, one table
keyed by model and field, filled into the schema when it is first built. A field missing
from both is listed by ``undescribed`` (a test keeps it empty).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_TRACE: dict[str, str] = {
    "candidates": "Every candidate with its score and source ranks (only with trace=full).",
    "template": "The prompt template that ranked or explained (file under prompts/).",
    "template_sha256": "SHA-256 of that template's text.",
    "prompt_sha256": "SHA-256 of the rendered prompt (replay: the same prompt).",
    "model_id": "The LLM that ran (empty: none did).",
    "model_revision": "The model's revision (weights digest).",
    "engine": "The LLM engine: vllm, openai, transformers or fake.",
    "config_sha256": "SHA-256 of the config that served this answer.",
    "prompt_tokens": "Prompt tokens sent to the LLM.",
    "completion_tokens": "Tokens the LLM wrote.",
    "llm_calls": "How many LLM calls this answer made.",
    "repair_rounds": "Constrained re-asks after an invalid LLM answer.",
    "rejected_entries": "LLM answer entries refused by validation (unknown id, duplicate...).",
    "raw_outputs": "The LLM's raw outputs (only with trace=full).",
    "timings": "Seconds per stage (retrieve, rank, evidence, explain).",
    "stability": "Scoring mode: agreement between shuffled candidate orders (mean Spearman).",
    "fallback": "Why the answer fell back (llm_timeout, llm_unavailable, llm_invalid, "
    "unstable); null: it did not.",
    "sources": "The candidate sources and their fusion weights.",
    "ranked_by": "Who ordered the list: retrieval, popularity, learned, llm:scoring, llm:listwise.",
    "profile": "The user profile text this request used, if any.",
    "profile_used": "Where the profile went: retrieval, rerank.",
    "notes": "One-line facts about this answer: fewer items than asked, a stale fitted "
    "model (naming the command to run), a fallback's cause.",
    "strategy": "personal (ranked for this history/query/profile) or popular (cold start).",
    "features": "ranking.mode = learned: the features that ranked this list.",
    "missing_rationales": "Item ids whose rationale was asked for but is missing.",
    "cache": "The per-user cache (service.cache_url): hit, miss or bypass; null: cache off.",
    "experiment": "The online experiment that served this answer (null: none applies).",
    "variant": 'Its variant that served this answer; interleaved: "interleaved".',
    "teams": "Interleaved answers: per item, the variant that picked it.",
}

FIELDS: dict[str, dict[str, str]] = {
    "ExperimentReport": {
        "experiment": "The experiment's name.",
        "kind": "ab (users split by a stable hash) or interleave (both variants in one list).",
        "variants": "Per variant, its numbers (means over users, 95% bootstrap CIs).",
        "test": "The test between the variants.",
        "warnings": "Why a number cannot be trusted yet (too few users).",
    },
    "VariantReport": {
        "name": "The variant.",
        "users": "Users with at least one exposure.",
        "exposures": "Impressions (answers shown).",
        "rate": "Positive feedback (click, like, view, purchase, a liked rating) per "
        "impression on shown items within window_s: per user, then averaged over users.",
        "rate_ci": "95% bootstrap CI of rate, resampling users.",
        "mrr": "Reciprocal rank of the first positive per impression (0 without one), "
        "per user, then averaged.",
        "mrr_ci": "95% bootstrap CI of mrr, resampling users.",
        "llm_tokens": "LLM tokens (prompt + completion) of its answers.",
        "llm_seconds": "Seconds its answers spent in LLM stages.",
    },
    "TestResult": {
        "name": "welch_t (A/B, per-user rates) or sign_test_users (interleave).",
        "statistic": "Welch's t of the second variant against the first, or the first "
        "variant's share of the users who preferred one.",
        "p_value": "Two-sided p-value.",
        "alpha": "The level below which favours is set.",
        "favours": "The better variant when p < alpha, else null.",
    },
    "Item": {
        "id": "The item's id (a string: 1-64 letters, digits, _ . : -).",
        "title": "Its title (data: shown, never followed as an instruction).",
        "text": "Its description.",
        "metadata": "Flat attributes (genre_*, year, ...): what filters match.",
    },
    "RankedItem": {
        "rank": "1-based position.",
        "item": "The catalog item.",
        "score": "The ranking score (higher is better; null where a ranker gives none).",
        "rationale": "Why, in words, from the evidence (null: not explained; "
        "explain=false, or past the LLM budget).",
        "cites": "History item ids the rationale cites.",
        "unsupported_terms": "Words of the rationale its evidence does not hold.",
        "evidence": "Why it was recommended, computed before any LLM runs.",
        "llm_score": "Scoring mode: the LLM's aggregated score before fusion.",
        "rank_variance": "Scoring mode: variance of its rank across shuffled orders.",
    },
    "Evidence": {
        "history": "The one or two history items that support it most.",
        "shared": "Its attributes shared with the history (genre Comedy, 1980s).",
        "request": "Words of the request found in the item's data.",
        "signals": "Each candidate source that ranked it, with its rank there (1 = first).",
    },
    "Support": {
        "id": "The history item's id.",
        "title": "Its title.",
        "by": "Which signals linked it: itemknn, embedding, attributes.",
        "similarity": "How similar (0..1).",
        "shared": "Attributes the two items share.",
    },
    "StageTiming": {"stage": "The stage's name.", "seconds": "Wall-clock seconds it took."},
    "TraceOut": _TRACE,
    "Trace": _TRACE,
    "Intent": {
        "query": "Free text the message asks for.",
        "year_min": "Earliest year wanted.",
        "year_max": "Latest year wanted.",
        "genres_include": "Genres wanted.",
        "genres_exclude": "Genres not wanted.",
        "more_like": "1-based positions in the last reply to find more like.",
        "exclude_picks": "1-based positions in the last reply to drop.",
        "repeat_ok": "Whether items shown before may come again.",
        "reset": "Start the wishes over.",
    },
    "Pick": {
        "id": "The item's id.",
        "title": "Its title.",
        "rationale": "Why it was picked (null: none written).",
        "year": "Its year, if known.",
        "genres": "Its genres.",
    },
    "Turn": {
        "n": "The turn's number in the session (1-based).",
        "message": "The user's message.",
        "intent": "What the message was read as (null: it could not be read).",
        "where": "The metadata filter the turn searched with.",
        "picks": "The items answered.",
        "violations": "Intent entries refused by validation.",
        "intent_prompt_sha256": "SHA-256 of the rendered intent prompt.",
        "intent_template_sha256": "SHA-256 of the intent template.",
        "rank_prompt_sha256": "SHA-256 of the rendered ranking prompt.",
        "model_id": "The LLM that read the message.",
        "relaxed": "Wishes dropped because nothing matched them all.",
        "seconds": "Wall-clock seconds the turn took.",
        "error": "Why the turn has no picks (null: it has).",
        "read_by": 'Who read the message: "normaliser", "llm", "normaliser+llm" or "query".',
        "reading": "The normaliser's reading (wishes, named titles, unread words), if it ran.",
        "fallback": 'Set when the LLM ran out of budget ("llm_timeout") or failed.',
        "notes": "What the turn skipped or changed, in words.",
    },
    "SessionState": {
        "id": "The session id.",
        "user_id": "The stored user chatting, if any.",
        "created": "When the session started, Unix seconds.",
        "query": "The active free-text wish.",
        "year_min": "Active earliest year.",
        "year_max": "Active latest year.",
        "genres_include": "Active wanted genres.",
        "genres_exclude": "Active unwanted genres.",
        "references": "Item ids of titles the user named (seeds, never picks).",
        "genres_any": "Genres of the named titles: a pick needs one of them.",
        "seeds": "Item ids to find more like.",
        "rejected": "Item ids the user turned down.",
        "shown": "Item ids shown so far.",
        "last_picks": "The last reply's items.",
        "turns": "Every turn, oldest first.",
    },
}


def undescribed(schema: dict[str, Any]) -> list[str]:
    """``Model.field`` for every property of every component without a description."""
    out = []
    for name, comp in schema.get("components", {}).get("schemas", {}).items():
        for field, prop in comp.get("properties", {}).items():
            if not prop.get("description"):
                out.append(f"{name}.{field}")
    return out


def describe_schema(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    for name, comp in schema.get("components", {}).get("schemas", {}).items():
        table = FIELDS.get(name.removesuffix("-Output").removesuffix("-Input"), {})
        for field, prop in comp.get("properties", {}).items():
            if not prop.get("description") and field in table:
                prop["description"] = table[field]
    app.openapi_schema = schema
    return schema
