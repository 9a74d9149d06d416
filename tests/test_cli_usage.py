"""The real `genre` entry point on bad command lines: one `error:` line, exit 2, no traceback
(`--debug` shows it); `--version`; rationales printed in rank order while they stream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli import _sets

from genre_agent.types import Item, RankedItem, Recommendation, StreamEvent, Trace

ROOT = Path(__file__).resolve().parents[1]
GENRE = Path(sys.executable).parent / "genre"


def genre(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``genre ARGS`` as a subprocess, running this checkout's code."""
    return subprocess.run(
        [str(GENRE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "says", "usage"),
    [
        (["--bogus"], "No such option: --bogus", "genre [OPTIONS] COMMAND [ARGS]..."),
        (["recommend", "--bogus"], "No such option: --bogus", "genre recommend [OPTIONS]"),
        (["nosuchcommand"], "No such command 'nosuchcommand'", "genre [OPTIONS] COMMAND"),
        (["recommend", "--user"], "Option '--user' requires an argument", "genre recommend"),
        (["recommend", "-k", "many"], "Invalid value for '-k'", "genre recommend"),
        (["models", "prepare", "a", "b"], "unexpected extra argument", "genre models prepare"),
    ],
    ids=["global-option", "command-option", "command", "missing-value", "bad-int", "extra-arg"],
)
def test_usage_error_is_one_line_and_exit_2(args: list[str], says: str, usage: str) -> None:
    proc = genre(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert f"(usage: {usage}" in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["--debug", "--bogus"], ["--debug", "recommend", "--bogus"]])
def test_debug_shows_the_traceback_of_a_usage_error(args: list[str]) -> None:
    proc = genre(*args)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert "NoSuchOption: No such option: --bogus" in proc.stderr


def test_version() -> None:
    from importlib.metadata import version

    proc = genre("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"genre {version('genre-agent')}\n" and proc.stderr == ""


def test_bare_group_prints_its_help_without_an_error_line() -> None:
    proc = genre("models")
    assert proc.returncode == 2
    assert "prepare" in proc.stdout and "error" not in proc.stderr


def test_a_genre_error_is_still_one_line() -> None:
    proc = genre("recommend", "-k", "0", "--set", "llm.engine=fake")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: -k must be between 1 and 100 (like ranking.k), got 0"
    ]


def test_quiet_libraries_unless_verbose() -> None:
    code = (
        "import logging, os, sys, warnings\n"
        "from genre_agent.cli.common import quiet_libraries\n"
        "quiet_libraries(sys.argv[1] == 'v')\n"
        "print(os.environ['VLLM_LOGGING_LEVEL'], os.environ['TRANSFORMERS_VERBOSITY'],"
        " logging.getLogger('vllm').level)\n"
        "warnings.warn_explicit('noisy', UserWarning, 'x.py', 1, module='vllm.engine')\n"
        "warnings.warn_explicit('ours', UserWarning, 'y.py', 1, module='genre_agent.x')\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY", "GENRE_QUIET_LIBRARIES"}
    }
    env["PYTHONPATH"] = str(ROOT)
    quiet = subprocess.run(
        [sys.executable, "-c", code, "q"], capture_output=True, text=True, env=env
    )
    loud = subprocess.run(
        [sys.executable, "-c", code, "v"], capture_output=True, text=True, env=env
    )
    assert quiet.stdout.split() == ["ERROR", "error", "40"], quiet.stderr
    assert loud.stdout.split() == ["INFO", "info", "20"], loud.stderr
    assert "noisy" not in quiet.stderr and "ours" in quiet.stderr
    assert "noisy" in loud.stderr and "ours" in loud.stderr


def test_a_spawned_child_of_a_quiet_cli_is_quiet_too() -> None:
    """vLLM's engine process imports the `genre` script's package but never runs the CLI's
    options: the environment the parent set quiets it at import."""
    code = (
        "import logging, warnings\n"
        "import genre_agent.cli.common\n"
        "print(logging.getLogger('vllm').level)\n"
        "warnings.warn_explicit('noisy', FutureWarning, 'x.py', 1, module='vllm.triton_utils')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "GENRE_QUIET_LIBRARIES": "1"},
    )
    assert quiet.stdout.split() == ["40"] and "noisy" not in quiet.stderr, quiet.stderr
    plain = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "GENRE_QUIET_LIBRARIES"},
    )
    assert plain.stdout.split() == ["0"] and "noisy" in plain.stderr, plain.stderr


def _events(order: list[int]) -> Any:
    items = [
        RankedItem(rank=r, item=Item(id=f"m{r}", title=f"Title {r}"), score=1.0 / r)
        for r in (1, 2, 3)
    ]
    ranked = Recommendation(user_id="u", items=items, trace=Trace(candidates=[]))
    yield StreamEvent(kind="ranked", recommendation=ranked)
    for r in order:
        yield StreamEvent(
            kind="rationale", item=items[r - 1].model_copy(update={"rationale": f"why {r}"})
        )
    yield StreamEvent(kind="done", recommendation=ranked)


@pytest.mark.parametrize("order", [[3, 1, 2], [2, 3, 1], [1, 2, 3], [3, 2]])
def test_streamed_rationales_print_in_rank_order(
    order: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    from genre_agent.cli.main import _print_stream

    _print_stream(_events(order))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ": why " in ln]
    assert [ln.split(".")[0] for ln in lines] == [str(r) for r in sorted(order)], lines


# vLLM's log line format ("INFO 12-07 05:40:01 [file.py:12] ...", also from its engine
# process), torch's C++ warnings ("[W1207 ...]") and Python warnings.
_LIBRARY_LINE = re.compile(
    r"^(\(EngineCore.*\) )?(INFO|WARNING|DEBUG) \d\d-\d\d |^\[W\d|Warning: |Warning\b"
    r"|Triton is installed|Loading safetensors|resource_tracker"
)


# Logging variables a real model loaded in this pytest process sets (engines.py sets
# VLLM_LOGGING_LEVEL=WARNING for in-process vLLM): a user's shell has none of them, and the
# CLI leaves a variable it finds alone.
_LOG_VARS = (
    "VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS",
    "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE", "TORCH_CPP_LOG_LEVEL", "PYTHONWARNINGS",
    "GENRE_QUIET_LIBRARIES",
)  # fmt: skip


def _user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _LOG_VARS}


@pytest.mark.real
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_real_model_recommend_is_quiet_and_in_rank_order(tmp_path: Path, verbose: bool) -> None:
    """The real default model in process: no library log lines unless -v, and the streamed
    rationales in rank order."""
    sets = _sets(tmp_path)[2:]  # without llm.engine=fake: the default engine and model
    catalog = ROOT / "tests" / "fixtures" / "catalog.jsonl"
    assert genre("index", str(catalog), *sets, "--set", "llm.engine=fake").returncode == 0
    proc = subprocess.run(
        [
            str(GENRE),
            *(["-v"] if verbose else []),
            "recommend",
            "--history",
            "m1",
            "-k",
            "3",
            *sets,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**_user_env(), "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    noisy = [ln for ln in proc.stderr.splitlines() if _LIBRARY_LINE.search(ln)]
    if verbose:
        assert noisy, proc.stderr[-3000:]  # the pattern does match vLLM's lines
    else:
        assert not noisy, noisy
    order = [int(m.group(1)) for m in re.finditer(r"^(\d+)\. .*?: ", proc.stdout, re.M)]
    assert order == [1, 2, 3], proc.stdout
