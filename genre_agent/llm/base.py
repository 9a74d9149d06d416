"""The LLM seam: one small Protocol, request/response types, and the engine registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from genre_agent.config import LLMConfig
from genre_agent.errors import ConfigError


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


EngineFactory = Callable[[LLMConfig, str], LLM]
ENGINES: dict[str, EngineFactory] = {}


def register_engine(kind: str) -> Callable[[EngineFactory], EngineFactory]:
    def deco(factory: EngineFactory) -> EngineFactory:
        ENGINES[kind] = factory
        return factory

    return deco


_CACHE: dict[tuple[object, ...], LLM] = {}
_LOCK = threading.Lock()


def get_engine(cfg: LLMConfig, announce: Callable[[str], None] | None = None) -> LLM:
    """Build (once per process) the engine that ``cfg`` names.

    Engines that do not declare ``thread_safe = True`` come wrapped in an EngineOwner, so
    any number of threads may share the returned object. Packaged model names are prepared
    lazily (see genre_agent.models.resolve_model).
    """
    from genre_agent.llm import engines  # noqa: F401  (registers the built-in engines)

    if cfg.engine not in ENGINES:
        raise ConfigError(f"llm.engine: unknown engine {cfg.engine!r}; known: {sorted(ENGINES)}")
    key = (
        cfg.engine,
        cfg.model,
        str(cfg.base_url),
        cfg.fake_script,
        cfg.dtype,
        cfg.enable_prefix_caching,
    )
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if cfg.engine in {"fake", "openai"}:
            target = cfg.model
        else:
            from genre_agent.models import resolve_model

            target = resolve_model(cfg.model, progress=_progress_printer(announce))
        if announce:
            announce(f"loading LLM engine {cfg.engine!r} with model {target}")
        t0 = time.perf_counter()
        engine = ENGINES[cfg.engine](cfg, target)
        if not getattr(engine, "thread_safe", False):
            # One engine thread serialises and batches concurrent callers (see owner.py).
            from genre_agent.llm.owner import own

            engine = own(engine, cfg.engine, cfg.engine_timeout_s)
        if announce:
            announce(f"engine ready in {time.perf_counter() - t0:.1f}s")
        _CACHE[key] = engine
        return engine


def clear_engines() -> None:
    with _LOCK:
        for engine in _CACHE.values():
            engine.close()
        _CACHE.clear()


def _progress_printer(announce: Callable[[str], None] | None) -> Any:
    if announce is None:
        return None
    last: dict[str, int] = {}

    def progress(label: str, done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1))
        if last.get(label, -10) + 10 <= pct or done == total:
            last[label] = pct
            announce(f"{label}: {pct}%")

    return progress
