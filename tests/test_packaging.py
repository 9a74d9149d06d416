"""Layout promises: clean imports, no top-level `eval`, prompts inside the wheel."""

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_subpackages_import_under_genre_agent():
    import genre_agent.eval
    import genre_agent.prompts
    import genre_agent.retrievers

    assert Path(genre_agent.retrievers.__file__).parent.name == "retrievers"
    assert Path(genre_agent.eval.__file__).parent.name == "eval"
    assert genre_agent.prompts


def test_no_generic_top_level_modules_installed():
    for name in ("eval", "retrievers", "prompts"):
        spec = importlib.util.find_spec(name)
        # Running from the repo root, the source dirs are importable by path; they must not
        # be *installed* top-level packages.
        assert spec is None or Path(spec.origin or "").resolve().is_relative_to(ROOT), name


def test_wheel_ships_prompts_and_maps_packages(tmp_path: Path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("genre_agent-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "genre_agent/prompts/rerank_listwise.system.j2" in names
    assert "genre_agent/retrievers/embedding.py" in names
    assert "genre_agent/eval/__init__.py" in names
    tops = {n.split("/")[0] for n in names if not n.startswith("genre_agent-")}
    assert tops == {"genre_agent"}, tops
