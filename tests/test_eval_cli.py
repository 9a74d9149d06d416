"""``genre eval`` end to end with CliRunner on a tiny fixture and the fake LLM."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genre_agent.config import load_config
from genre_agent.errors import ConfigError
from genre_eval.cli import app
from genre_eval.fixtures import write_jsonl_dataset

runner = CliRunner()


def _experiment(tmp_path: Path, extra: str = "") -> Path:
    data = write_jsonl_dataset(tmp_path / "data")
    path = tmp_path / "exp.toml"
    path.write_text(f"""
name = "cli"
baselines = ["random", "popularity", "bm25", "embedding", "itemknn", "fusion"]
ks = [1, 5]
primary = "ndcg@5"
bootstrap = 200
permutations = 200
[dataset]
kind = "jsonl"
path = "{data.name}"
[protocol]
kind = "sampled"
n_candidates = 8
users = 6
min_history = 3
[config.llm]
engine = "fake"
[config.embedder]
kind = "fake"
[[variants]]
name = "first"
[[variants]]
name = "reverse"
overrides = {{ "llm.fake_script" = "reverse" }}
{extra}""")
    return path


def test_run_then_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["run", str(_experiment(tmp_path)), "--out", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert "6 users" in res.output and "reverse" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["systems"]) == {
        "random",
        "popularity",
        "bm25",
        "embedding",
        "itemknn",
        "fusion",
        "first",
        "reverse",
    }
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http" not in html.replace("http://", "")
    md = (out / "report.md").read_text()
    assert "| first | llm | 6 |" in md and "template sha256" in md
    (out / "report.md").unlink()
    res = runner.invoke(app, ["report", str(out)])
    assert res.exit_code == 0 and (out / "report.md").exists()


def test_rerun_resumes_and_only_filter(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    out = tmp_path / "run"
    res = runner.invoke(
        app, ["run", str(exp), "--out", str(out), "--only", "first", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all('"system": "first"' in x for x in lines)
    runner.invoke(app, ["run", str(exp), "--out", str(out), "--only", "first", "--no-progress"])
    assert len((out / "results.jsonl").read_text().splitlines()) == 6


def test_bad_experiment_is_a_clear_error(tmp_path: Path) -> None:
    exp = tmp_path / "bad.toml"
    exp.write_text(
        'name = "x"\n[dataset]\nkind = "jsonl"\npath = "nowhere"\n[protocol]\nn_cand = 3\n'
    )
    res = runner.invoke(app, ["run", str(exp), "--no-progress"])
    assert isinstance(res.exception, ConfigError)
    assert "protocol.n_cand: unknown key" in str(res.exception)
    # Through the real entry point: a clean message and exit code 2, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "genre_agent.cli", "eval", "run", str(exp)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "protocol.n_cand: unknown key" in proc.stderr and "Traceback" not in proc.stderr


def test_search_writes_a_loadable_best_config(tmp_path: Path) -> None:
    out = tmp_path / "search"
    res = runner.invoke(
        app,
        [
            "search",
            str(_experiment(tmp_path)),
            "--trials",
            "3",
            "--sampler",
            "random",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((out / "search.json").read_text())
    assert len(result["trials"]) == 3 and (out / "final" / "results.jsonl").exists()
    assert all(
        json.loads(x)["split"] == "valid"
        for x in (out / "trial000" / "results.jsonl").read_text().splitlines()
    )
    cfg = load_config(out / "best_config.toml", use_env=False)
    assert cfg.retrieval.history_len == result["best"]["params"]["history_len"]
    assert tomllib.loads((out / "best_config.toml").read_text())["llm"]["engine"] == "fake"
    res = runner.invoke(
        app, ["search", str(_experiment(tmp_path)), "--trials", "2", "--out", str(tmp_path / "tpe")]
    )
    assert res.exit_code == 0, res.output


def test_search_space_from_the_cli_fixes_and_bounds_knobs(tmp_path: Path) -> None:
    out = tmp_path / "space"
    scorer = '[[variants]]\nname = "scorer"\nmode = "scoring"\nk = 8\n'
    res = runner.invoke(
        app,
        [
            "search",
            str(_experiment(tmp_path, scorer)),
            "--variant",
            "scorer",
            "--trials",
            "3",
            "--sampler",
            "random",
            "--space",
            "history_len=4",
            "--space",
            "fusion_weight=0.2,0.4",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    trials = json.loads((out / "search.json").read_text())["trials"]
    assert all(t["params"]["history_len"] == 4 for t in trials)
    assert all(0.2 <= t["params"]["fusion_weight"] <= 0.4 for t in trials)
    assert all("template" not in t["params"] for t in trials)  # the variant's own template
    # The written config serves what was measured: the chosen weight is ranking.fusion_weight.
    best = json.loads((out / "search.json").read_text())["best"]["params"]["fusion_weight"]
    cfg = load_config(out / "best_config.toml", use_env=False)
    assert cfg.ranking.mode == "scoring" and cfg.ranking.fusion_weight == best
    listwise = runner.invoke(
        app, ["search", str(_experiment(tmp_path)), "--space", "fusion_weight=0,0.5"]
    )
    assert listwise.exit_code != 0 and "no scores to fuse" in str(listwise.exception)
    bad = runner.invoke(app, ["search", str(_experiment(tmp_path)), "--space", "fusion=0,1"])
    assert bad.exit_code != 0 and "--space 'fusion=0,1'" in str(bad.exception)


def test_search_can_share_a_runs_cache(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    run_dir = tmp_path / "run"
    res = runner.invoke(app, ["run", str(exp), "--out", str(run_dir), "--no-progress"])
    assert res.exit_code == 0, res.output
    shared = run_dir / "llm_cache.sqlite"
    out = tmp_path / "s"
    res = runner.invoke(
        app,
        [
            "search",
            str(exp),
            "--trials",
            "1",
            "--sampler",
            "random",
            "--space",
            "history_len=4",
            "--out",
            str(out),
            "--cache",
            str(shared),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "search.json").exists() and not (out / "llm_cache.sqlite").exists()


@pytest.mark.parametrize("protocol", ["sampled", "two-stage"])
def test_search_over_sources_and_mode_serves_what_it_measured(tmp_path: Path, protocol) -> None:
    """Search source weights and the ranking mode; then serve the written config file
    through a Recommender on the test split and get the search's number back."""
    from genre_eval.experiment import load_experiment
    from genre_eval.runner import Runner
    from genre_eval.summary import summarize_prepared

    exp_path = _experiment(tmp_path)
    text = exp_path.read_text().replace('kind = "sampled"', f'kind = "{protocol}"')
    exp_path.write_text(text)
    out = tmp_path / "s"
    space = [
        "--space",
        "source.itemknn=0,2",
        "--space",
        "source.bm25=0,1",
        "--space",
        "source.popularity=0,1",
        "--space",
        "source.embedding=0,1",
        "--space",
        "modes=retrieval,scoring",
        "--space",
        "history_len=20",
    ]
    res = runner.invoke(
        app,
        [
            "search",
            str(exp_path),
            "--trials",
            "4",
            "--sampler",
            "random",
            "--out",
            str(out),
            "--set",
            "ranking.rationale_top_r=0",
            *space,
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((out / "search.json").read_text())
    assert {t["params"]["mode"] for t in result["trials"]} <= {"retrieval", "scoring"}
    best = tomllib.loads((out / "best_config.toml").read_text())
    assert best["retrieval"]["sources"] == result["best_sources"]
    # Serve the file: an experiment whose config IS best_config.toml, one plain variant.
    exp = load_experiment(exp_path)
    served = exp.model_copy(update={"config": best, "baselines": [], "variants": []})
    run = Runner(served, tmp_path / "served", split="test")
    from genre_eval.experiment import VariantSpec

    run.run_variant(VariantSpec(name="served"))
    run.write_manifest()
    got = summarize_prepared(tmp_path / "served", run.prepared)["systems"]["served"]
    assert got["metrics"][exp.primary]["mean"] == pytest.approx(result["test"])
    assert (
        got["config_sha256"]
        == json.loads((out / "final" / "results.jsonl").read_text().splitlines()[0])[
            "config_sha256"
        ]
    )


def test_only_names_unknown_systems(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["run", str(_experiment(tmp_path)), "--only", "first", "--only", "nope"]
    )
    assert res.exit_code != 0
    assert "--only: ['nope'] not in" in str(res.exception) + res.output


def test_best_config_toml_round_trips_non_bmp_text() -> None:
    """An emoji (outside the BMP), CJK, a mathematical letter, quotes and a backslash:
    the written TOML parses with tomllib back to the same config."""
    from genre_eval.search import config_toml

    odd = 'clé 🎬 密钥 \U0001f600 𝔘 "quoted" back\\slash'
    cfg = load_config(
        {
            "llm": {"engine": "fake", "api_key": odd},
            "chat": {"genres": ["Drama", "Sci-Fi 🚀", "𝔘nicode"]},
        },
        use_env=False,
    )
    text = config_toml(cfg)
    assert "\\ud83c" not in text.lower()  # no surrogate escapes, which tomllib rejects
    parsed = tomllib.loads(text)
    assert parsed["llm"]["api_key"] == odd
    assert load_config(parsed, use_env=False) == cfg
