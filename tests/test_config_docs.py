"""docs/config.md is generated from the config tree and kept in sync by this test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from genre_agent import config_docs
from genre_agent.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"


def _keys(cls: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key of the tree, walked independently of config_docs."""
    out = []
    for name, info in cls.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _keys(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_docs_config_md_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == config_docs.render(), (
        "docs/config.md is out of date: run `python -m genre_agent.config_docs > docs/config.md`"
    )


def _cells(row: str) -> list[str]:
    """A markdown table row's cells (``\\|`` inside a cell is not a separator)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_every_key_has_a_row_with_type_default_and_env_var() -> None:
    text = config_docs.render()
    rows = {_cells(ln)[0].strip("`"): ln for ln in text.splitlines() if ln.startswith("| `")}
    keys = _keys(Config)
    assert len(keys) > 100 and set(rows) == set(keys)
    for key in keys:
        env = "GENRE__" + key.upper().replace(".", "__")
        cells = _cells(rows[key])
        assert cells[1] and cells[2].startswith("`") and cells[3] == f"`{env}`", rows[key]


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("llm.request_timeout_s", "7.5", 7.5),
        ("service.llm_budget_s", "3", 3.0),
        ("retrieval.sequential.max_len", "20", 20),
        ("ranking.learned.seed", "4", 4),
    ],
)
def test_documented_env_var_sets_the_key(
    key: str, raw: str, expected: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = "GENRE__" + key.upper().replace(".", "__")
    assert f"`{env}`" in config_docs.render()
    monkeypatch.setenv(env, raw)
    assert _get(load_config(), key) == expected


def test_defaults_in_the_doc_are_the_trees() -> None:
    text = config_docs.render()
    assert '| `llm.engine` | "vllm" \\| "openai" \\| "transformers" \\| "fake" | `"vllm"` |' in text
    assert "| `service.llm_budget_s` | number (> 0) | `20.0` |" in text
    assert "| `store.models_path` | path \\| none | `none` |" in text


def test_check_flags_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "config.md"
    stale.write_text(config_docs.render().replace("`20.0`", "`25.0`"), encoding="utf-8")
    cmd = [sys.executable, "-m", "genre_agent.config_docs", "--check"]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    bad = subprocess.run([*cmd, str(stale)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode == 1 and "out of date" in bad.stderr
    good = subprocess.run([*cmd, str(DOC)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert good.returncode == 0, good.stderr
