"""A scripted LLM for unit tests: deterministic, no model, no network."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence

from genre_agent.llm.base import Generation, GenRequest, LabelScores, ScoreRequest

Script = Callable[[GenRequest], str]
ScoreScript = Callable[[ScoreRequest], dict[str, float]]


def _fake_label_scores(req: ScoreRequest, script: str) -> dict[str, float]:
    """Built-in scoring scripts, from ``hint["candidate_ids"]`` (the labelled ids, in order).

    first: prefers earlier positions (a pure position bias); reverse: later positions;
    by_id: a fixed preference per item id, whatever its position (position-robust);
    flat: every label equal.
    """
    ids = list(req.hint.get("candidate_ids", req.labels))
    n = len(req.labels)
    if script == "first":
        raw = [-float(i) for i in range(n)]
    elif script == "reverse":
        raw = [float(i) for i in range(n)]
    elif script == "by_id":
        raw = [int(hashlib.sha256(i.encode()).hexdigest()[:8], 16) / 2**32 * 8 for i in ids]
    elif script == "flat":
        raw = [0.0] * n
    else:
        raise ValueError(f"unknown fake score script {script!r}")
    log_z = math.log(sum(math.exp(v) for v in raw))
    return {lab: v - log_z for lab, v in zip(req.labels, raw, strict=True)}


def _entries(ids: list[str], k: int) -> list[dict[str, str]]:
    return [{"item_id": i, "rationale": f"Fits the user's history ({i})."} for i in ids[:k]]


def _ranking_text(req: GenRequest, order: str) -> str:
    """Answer a ranking request from its hint: remaining candidate ids and slots to fill."""
    ids = list(req.hint.get("candidate_ids", []))
    k = int(req.hint.get("slots", req.hint.get("k", len(ids))))
    if order == "reverse":
        ids = ids[::-1]
    if order == "duplicate" and ids and not req.assistant_prefix:
        # Repeat the first id in the first pass, as an unconstrained model might; repair
        # rounds (whose first entry a real constrained decoder must draw from unused ids)
        # answer correctly.
        chosen = [ids[0], ids[0], *ids[1:]]
        ids = chosen
    if order == "offlist":
        ids = ["not-a-candidate", *ids]
    if req.hint.get("format") == "ids":
        body = json.dumps(ids[:k])[1:-1]
        return body + "]}" if req.assistant_prefix else '{"ranking": [' + body + "]}"
    body = json.dumps(_entries(ids, k))[1:-1]
    if req.assistant_prefix:
        return body + "]}"
    return '{"items": [' + body + "]}"


def _profile_text(req: GenRequest) -> str:
    """A valid profile answer citing the user's first history ids (``hint["history_ids"]``)."""
    ids = list(req.hint.get("history_ids", []))
    return json.dumps(
        {
            "liked": [{"topic": "fake topic", "evidence": ids[:2]}],
            "disliked": [],
            "summary": "Fake profile of a user who liked " + ", ".join(ids[-3:]) + ".",
        }
    )


def _enrich_text(req: GenRequest) -> str:
    """A valid enrichment answer naming the item (``hint["title"]``)."""
    summary = f"Fake summary of {req.hint.get('title', req.hint.get('item_id', ''))}"[:100]
    return json.dumps({"summary": summary + ".", "keywords": ["fake keyword"]})


def _facts_text(req: GenRequest) -> str:
    """The "facts" rationale format: cite the first support, use its first fact."""
    ids = list(req.hint.get("evidence_ids") or [])
    titles = list(req.hint.get("evidence_titles") or [])
    facts = [f for f in req.hint.get("facts") or [] if f != "liked by the same people"]
    fact = facts[0] if facts else "what you asked for"
    if ids:
        why = f"You liked {titles[0]}; this one shares {fact}."
    else:
        why = f"Fits the user's history ({req.hint['item_id']})."
    used = facts[:1] or list(req.hint.get("facts") or [])[:1]
    return json.dumps({"cites": ids[:1], "facts": used, "rationale": why})


def _linked_text(req: GenRequest) -> str:
    """The "linked" rationale format: the chosen phrases joined by "and"."""
    phrases = list(req.hint.get("facts") or [])
    why = (
        f"You may like it, after {' and '.join(phrases)}."
        if phrases
        else "You may like it today, we think."
    )
    return json.dumps({"cites": list(req.hint.get("cites") or []), "rationale": why})


class FakeLLM:
    """Returns scripted text. Built-in scripts answer ranking requests from ``hint``:

    first (candidate order), reverse, duplicate (repeats an id), offlist (an unknown id),
    malformed (not JSON). A callable script gets each request and returns the text.
    Profile and enrichment requests get a small valid answer built from their ``hint``
    (except with ``malformed``).

    ``score_script`` answers ``score_labels`` (see _fake_label_scores), or is a callable
    returning {label: logprob}. ``delay_s``: each ``generate`` call waits this long first,
    as a real engine would (so a stream's events come apart).
    """

    # Scripts are pure and list.append is atomic: callers may share one FakeLLM.
    thread_safe = True

    def __init__(
        self,
        script: str | Script = "first",
        score_script: str | ScoreScript = "first",
        delay_s: float = 0.0,
    ) -> None:
        self.script = script
        self.delay_s = delay_s
        self.score_script = score_script
        self.model_id = f"fake:{script if isinstance(script, str) else 'custom'}"
        self.revision = "0"
        self.requests: list[GenRequest] = []
        self.score_requests: list[ScoreRequest] = []

    def _answer(self, req: GenRequest) -> str:
        if callable(self.script):
            return self.script(req)
        if self.script == "malformed":
            return '{"items": [{"item_id": '
        if req.hint.get("task") == "rank":
            return _ranking_text(req, self.script)
        if req.hint.get("task") == "profile":
            return _profile_text(req)
        if req.hint.get("task") == "enrich":
            return _enrich_text(req)
        if req.hint.get("task") == "explain" and req.hint.get("format") == "facts":
            return _facts_text(req)
        if req.hint.get("task") == "explain" and req.hint.get("format") == "linked":
            return _linked_text(req)
        if req.hint.get("task") == "explain":
            why = f"Fits the user's history ({req.hint['item_id']})."
            if '"cites"' in (req.regex or ""):  # the evidence format
                ids = list(req.hint.get("evidence_ids") or [])
                titles = list(req.hint.get("evidence_titles") or [])
                shared = list(req.hint.get("evidence_shared") or [])
                # Cite the first support that shares something (the schema offers those).
                pick = next((n for n, s in enumerate(shared) if s), 0)
                if not ids:
                    return json.dumps({"rationale": why, "cites": []})
                facts = shared[pick] if pick < len(shared) else []
                what = facts[0].split(" ", 1)[-1] if facts else "the history of this user"
                why = f"Like {titles[pick]}, it shares {what}."
                return json.dumps({"rationale": why, "cites": [ids[pick]]})
            return json.dumps({"rationale": why})
        return str(req.hint.get("reply", "{}"))

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for req in requests:
            self.requests.append(req)
            text = self._answer(req)
            n_prompt = sum(len(m.content.split()) for m in req.messages)
            out.append(Generation(text, n_prompt, len(text.split()), 0.0))
        return out

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]:
        out = []
        for req in requests:
            self.score_requests.append(req)
            if callable(self.score_script):
                scores = self.score_script(req)
            else:
                scores = _fake_label_scores(req, self.score_script)
            n_prompt = sum(len(m.content.split()) for m in req.messages)
            out.append(LabelScores(dict(scores), n_prompt, 0.0))
        return out

    def close(self) -> None:
        return None
