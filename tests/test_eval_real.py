"""``genre eval run`` once on a real model (SmolLM2-135M via transformers) and real embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_eval.cli import app
from genre_eval.fixtures import write_jsonl_dataset

pytestmark = pytest.mark.real


def test_eval_run_on_the_real_tiny_model(tmp_path: Path) -> None:
    data = write_jsonl_dataset(tmp_path / "data", n_users=6, n_items=30)
    exp = tmp_path / "exp.toml"
    exp.write_text(f"""
name = "real"
baselines = ["random", "embedding"]
ks = [1, 3]
primary = "ndcg@3"
bootstrap = 200
permutations = 200
[dataset]
kind = "jsonl"
path = "{data}"
[protocol]
n_candidates = 5
users = 2
min_history = 3
[config.llm]
engine = "transformers"
model = "smollm2-135m"
dtype = "float32"
[config.ranking]
mode = "listwise"
k = 3
max_rationale_chars = 30
[[variants]]
name = "tiny"
""")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(exp), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    tiny = summary["systems"]["tiny"]
    assert tiny["users"] == 2 and tiny["model_id"] and len(tiny["template_sha256"]) == 64
    # The real model answered: a run whose every request failed is not a passing run.
    assert tiny["failure_rate"] < 1.0, tiny
    assert tiny["completion_tokens_per_request"] > 0, tiny
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    answered = [r for r in lines if r["system"] == "tiny" and not r.get("failed")]
    assert answered and all(r["ranked"] for r in answered)
    # Replay from the run's own cache: same metrics, no new generations needed.
    res2 = CliRunner().invoke(
        app,
        [
            "run",
            str(exp),
            "--out",
            str(tmp_path / "replay"),
            "--cache",
            str(out / "llm_cache.sqlite"),
            "--no-progress",
        ],
    )
    assert res2.exit_code == 0, res2.output
    again = json.loads((tmp_path / "replay" / "summary.json").read_text())["systems"]["tiny"]
    assert again["metrics"] == tiny["metrics"]
