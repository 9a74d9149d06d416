"""The conftest guard: an unmarked test cannot build a real LLM engine."""

from __future__ import annotations

import pytest
from conftest import RealEngineRefused

from genre_agent.config import LLMConfig
from genre_agent.llm import engines, get_engine, registry


@pytest.mark.parametrize("engine", ["vllm", "transformers"])
def test_an_unmarked_test_cannot_build_a_real_engine(engine: str) -> None:
    cls = engines.VLLMEngine if engine == "vllm" else engines.TransformersEngine
    with pytest.raises(RealEngineRefused, match="not marked real or server"):
        cls(LLMConfig(engine=engine), "no-such-model")  # type: ignore[arg-type]


def test_a_cached_real_engine_is_not_handed_to_an_unmarked_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As if a real-marked test had built the engine earlier in the session."""
    cfg = LLMConfig(engine="vllm", model="/no/such/model")
    key = (
        cfg.engine,
        cfg.model,
        str(cfg.base_url),
        cfg.fake_script,
        cfg.dtype,
        cfg.enable_prefix_caching,
    )
    monkeypatch.setitem(registry._CACHE.data, key, object())  # type: ignore[attr-defined]
    monkeypatch.setattr("genre_agent.llm.models.resolve_model", lambda model, progress=None: model)
    assert key not in registry._CACHE
    with pytest.raises(RealEngineRefused, match="not marked real or server"):
        get_engine(cfg)


def test_the_fake_engine_is_still_built_and_cached() -> None:
    cfg = LLMConfig(engine="fake")
    assert get_engine(cfg) is get_engine(cfg)
