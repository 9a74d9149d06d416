"""The LLM seam: one small Protocol and its request/response types (engines: registry.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenRequest:
    """One generation. ``regex`` constrains the continuation of ``assistant_prefix``.

    ``hint`` is metadata for fakes and logs only; real engines never send it to a model.
    """

    messages: tuple[Message, ...]
    regex: str | None = None
    assistant_prefix: str = ""
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int = 0
    hint: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ScoreRequest:
    """One label-scoring pass: the log-probability of each label as the first answer token.

    Every label must be a single token of the model's tokenizer (engines check this).
    """

    messages: tuple[Message, ...]
    labels: tuple[str, ...]
    assistant_prefix: str = ""
    hint: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class LabelScores:
    """Log-probabilities of the labels, renormalised over the label set."""

    logprobs: dict[str, float]
    prompt_tokens: int = 0
    seconds: float = 0.0


@runtime_checkable
class LLM(Protocol):
    """Anything that turns chat requests into (constrained) text, in batches."""

    model_id: str
    revision: str

    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]: ...

    def close(self) -> None: ...


@runtime_checkable
class LabelScorer(Protocol):
    """An LLM that can also score single-token labels in one forward pass (scoring mode)."""

    model_id: str
    revision: str

    def score_labels(self, requests: Sequence[ScoreRequest]) -> list[LabelScores]: ...
