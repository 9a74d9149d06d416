"""Layout promises: real folders (no symlinks), a lean server wheel, the harness on its own."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS_ONLY = {"optuna", "matplotlib", "peft"}


def test_no_committed_symlinks():
    """grep, find and editors see every module: the tree holds no symlinked folder."""
    listing = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        pytest.skip("not a git checkout")
    links = [
        line.split("\t")[1] for line in listing.stdout.splitlines() if line.startswith("120000")
    ]
    assert not links, links
    assert not any(p.is_symlink() for p in ROOT.joinpath("genre_agent").iterdir())


def test_packages_import_from_their_own_folders():
    import genre_agent.prompts
    import genre_eval
    import retrievers

    assert Path(retrievers.__file__).parent == ROOT / "retrievers"
    assert Path(genre_eval.__file__).parent == ROOT / "eval" / "genre_eval"
    assert Path(genre_agent.prompts.__file__).parent == ROOT / "prompts"


def test_every_package_folder_is_listed_in_pyproject():
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in ROOT.joinpath("genre_agent").glob("**/__init__.py")
    } | {"genre_agent.prompts", "retrievers"}
    assert found == listed, found ^ listed


def _wheel(src: Path, out: Path) -> tuple[set[str], zipfile.ZipFile]:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return set(zipfile.ZipFile(wheel).namelist()), zipfile.ZipFile(wheel)


def _requires(zf: zipfile.ZipFile) -> set[str]:
    meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    lines = zf.read(meta).decode().splitlines()
    reqs = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    # Only unconditional requirements: an extra ("; extra == ...") is not installed by default.
    names = set()
    for req in reqs:
        if "extra ==" in req:
            continue
        name = req.split(";")[0].strip()
        for sep in "<>=!~[ (":
            name = name.split(sep)[0]
        names.add(name.lower())
    return names


def test_server_wheel_is_lean_and_ships_prompts(tmp_path: Path):
    names, zf = _wheel(ROOT, tmp_path)
    assert "genre_agent/prompts/rerank_listwise.system.j2" in names
    assert "retrievers/embedding.py" in names
    # The web page (genre_agent/http/web.py) is served from files inside the package.
    for page_file in ("index.html", "app.js", "charts.js", "style.css", "icon.svg"):
        assert f"genre_agent/http/static/{page_file}" in names, page_file
    tops = {n.split("/")[0] for n in names if ".dist-info" not in n.split("/")[0]}
    assert tops == {"genre_agent", "retrievers"}, tops
    assert not (_requires(zf) & HARNESS_ONLY), _requires(zf) & HARNESS_ONLY


def test_harness_wheel_carries_its_own_dependencies(tmp_path: Path):
    names, zf = _wheel(ROOT / "eval", tmp_path)
    tops = {n.split("/")[0] for n in names if ".dist-info" not in n.split("/")[0]}
    assert tops == {"genre_eval"}, tops
    assert HARNESS_ONLY <= _requires(zf)
    assert "genre-agent" in _requires(zf)
    eps = next(n for n in names if n.endswith("entry_points.txt"))
    assert "genre_eval.cli:register" in zf.read(eps).decode()
