from pathlib import Path

import pytest
from pydantic import ValidationError

from genre_agent.config import Config, load_config
from genre_agent.errors import ConfigError


def test_defaults_are_the_cpu_default_model():
    cfg = load_config(use_env=False)
    assert cfg.llm.engine == "vllm"
    assert cfg.llm.model == "qwen2.5-coder-0.5b"
    assert cfg.store.kind == "embedded"


def test_unknown_key_is_an_error_naming_it(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('[llm]\nengnie = "fake"\n')
    with pytest.raises(ConfigError, match=r"llm\.engnie: unknown key"):
        load_config(path, use_env=False)


def test_bad_value_names_field_and_value(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("ranking:\n  k: 0\n")
    with pytest.raises(ConfigError, match=r"ranking\.k.*got 0"):
        load_config(path, use_env=False)


def test_precedence_defaults_file_env_overrides(tmp_path: Path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text('[llm]\nengine = "transformers"\nmodel = "smollm2-135m"\n[ranking]\nk = 3\n')
    monkeypatch.setenv("GENRE__RANKING__K", "4")
    cfg = load_config(path, overrides={"llm.engine": "fake"})
    assert (cfg.llm.engine, cfg.llm.model, cfg.ranking.k) == ("fake", "smollm2-135m", 4)


def test_config_is_frozen_and_fingerprinted():
    cfg = Config()
    with pytest.raises(ValidationError):
        cfg.llm.engine = "fake"  # type: ignore[misc]
    assert cfg.fingerprint() != load_config({"ranking": {"k": 5}}, use_env=False).fingerprint()
