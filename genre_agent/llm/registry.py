"""The engine registry: ``llm.engine`` names a factory in ENGINES; engines are built once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from genre_agent.config import EngineKind, LLMConfig
from genre_agent.errors import ConfigError
from genre_agent.llm.base import LLM
from genre_agent.llm.fake import FakeLLM

EngineFactory = Callable[[LLMConfig, str], LLM]


def _vllm(cfg: LLMConfig, target: str) -> LLM:
    from genre_agent.llm.engines import VLLMEngine

    return VLLMEngine(cfg, target)


def _openai(cfg: LLMConfig, target: str) -> LLM:
    from genre_agent.llm.engines import OpenAIEngine

    return OpenAIEngine(cfg, target)


def _transformers(cfg: LLMConfig, target: str) -> LLM:
    from genre_agent.llm.engines import TransformersEngine

    return TransformersEngine(cfg, target)


def _fake(cfg: LLMConfig, target: str) -> LLM:
    return FakeLLM(script=cfg.fake_script, delay_s=cfg.fake_delay_s)


# One entry per `llm.engine` kind; heavy engines import their library only when built.
ENGINES: dict[EngineKind, EngineFactory] = {
    "vllm": _vllm,
    "openai": _openai,
    "transformers": _transformers,
    "fake": _fake,
}


_CACHE: dict[tuple[object, ...], LLM] = {}
_LOCK = threading.Lock()


def get_engine(cfg: LLMConfig, announce: Callable[[str], None] | None = None) -> LLM:
    """Build (once per process) the engine that ``cfg`` names.

    Engines that do not declare ``thread_safe = True`` come wrapped in an EngineOwner, so
    any number of threads may share the returned object.
    Packaged model names are prepared lazily (see genre_agent.llm.models.resolve_model).
    """
    if cfg.engine not in ENGINES:
        raise ConfigError(f"llm.engine: unknown engine {cfg.engine!r}; known: {sorted(ENGINES)}")
    key = (
        cfg.engine,
        cfg.model,
        str(cfg.base_url),
        cfg.fake_script,
        cfg.fake_delay_s,
        cfg.dtype,
        cfg.enable_prefix_caching,
    )
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if cfg.engine in {"fake", "openai"}:
            target = cfg.model
        else:
            from genre_agent.llm.models import resolve_model

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
