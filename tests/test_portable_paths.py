"""No committed file names a path of this machine; experiment dataset paths are portable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from genre_agent.errors import ConfigError
from genre_eval.experiment import load_experiment
from genre_eval.fixtures import write_jsonl_dataset

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 2 * 1024 * 1024


def _needles() -> list[str]:
    """The checkout's parent folder and the home folder, each with a trailing slash.

    Computed at run time so that this file itself names no machine path.
    """
    out: list[str] = []
    for folder in (ROOT.parent, Path.home()):
        needle = str(folder).rstrip("/") + "/"
        if needle != "/" and needle not in out:
            out.append(needle)
    return out


def _committed_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in listing.decode("utf-8").split("\0") if name]


def test_no_committed_file_contains_a_machine_path() -> None:
    needles = _needles()
    if not needles:
        pytest.skip("the checkout's parent and the home folder are both the filesystem root")
    hits: list[str] = []
    for path in _committed_files():
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for needle in needles:
                if needle in line:
                    hits.append(f"{path.relative_to(ROOT)}:{lineno}: {needle!r}: {line.strip()}")
    assert not hits, "committed files name paths of this machine:\n" + "\n".join(hits)


def _experiment_toml(dataset_path: str) -> str:
    # The structure of genre_eval.fixtures.tiny_experiment, as a file.
    return f"""\
name = "t"
baselines = ["random", "popularity", "itemknn"]
ks = [1, 5]
primary = "ndcg@5"
batch_size = 3
bootstrap = 200
permutations = 200

[dataset]
kind = "jsonl"
path = "{dataset_path}"

[protocol]
kind = "sampled"
n_candidates = 8
users = 8
min_history = 3

[config.llm]
engine = "fake"

[config.embedder]
kind = "fake"

[[variants]]
name = "a"
"""


def test_experiment_dataset_path_expands_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_jsonl_dataset(tmp_path / "data" / "d")
    exp_file = tmp_path / "exps" / "exp.toml"
    exp_file.parent.mkdir()
    exp_file.write_text(_experiment_toml("$GENRE_TEST_DATA_X/d"))

    monkeypatch.setenv("GENRE_TEST_DATA_X", str(tmp_path / "data"))
    exp = load_experiment(exp_file)
    assert Path(exp.dataset.path) == data
    assert (Path(exp.dataset.path) / "interactions.jsonl").exists()

    monkeypatch.delenv("GENRE_TEST_DATA_X")
    with pytest.raises(ConfigError) as info:
        load_experiment(exp_file)
    message = str(info.value)
    assert "dataset.path" in message
    assert "GENRE_TEST_DATA_X" in message
    assert str(exp_file) in message

    # Without a variable, a relative path is still resolved against the file's folder.
    exp_file.write_text(_experiment_toml("../data/d"))
    assert Path(load_experiment(exp_file).dataset.path) == data.resolve()
