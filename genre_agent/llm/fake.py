"""A scripted LLM for unit tests: deterministic, no model, no network."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from genre_agent.llm.base import Generation, GenRequest

Script = Callable[[GenRequest], str]


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
    body = json.dumps(_entries(ids, k))[1:-1]
    if req.assistant_prefix:
        return body + "]}"
    return '{"items": [' + body + "]}"


class FakeLLM:
    """Returns scripted text. Built-in scripts answer ranking requests from ``hint``:

    first (candidate order), reverse, duplicate (repeats an id), offlist (an unknown id),
    malformed (not JSON). A callable script gets each request and returns the text.
    """

    def __init__(self, script: str | Script = "first") -> None:
        self.script = script
        self.model_id = f"fake:{script if isinstance(script, str) else 'custom'}"
        self.revision = "0"
        self.requests: list[GenRequest] = []

    def _answer(self, req: GenRequest) -> str:
        if callable(self.script):
            return self.script(req)
        if self.script == "malformed":
            return '{"items": [{"item_id": '
        if req.hint.get("task") == "rank":
            return _ranking_text(req, self.script)
        return str(req.hint.get("reply", "{}"))

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        out = []
        for req in requests:
            self.requests.append(req)
            text = self._answer(req)
            n_prompt = sum(len(m.content.split()) for m in req.messages)
            out.append(Generation(text, n_prompt, len(text.split()), 0.0))
        return out

    def close(self) -> None:
        return None
