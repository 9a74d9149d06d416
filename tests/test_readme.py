"""The README's Python example runs as written (real default model) and prints what it shows."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_block() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_readme_commands_are_the_scripts_ci_runs():
    text = (ROOT / "README.md").read_text()
    assert "bash scripts/install.sh && .venv/bin/genre demo" in text
    tests = "bash scripts/install-servers.sh && bash scripts/install.sh && bash scripts/test.sh"
    assert tests in text
    assert tests in (ROOT / ".ci/run").read_text()


@pytest.mark.real
def test_readme_python_example_runs():
    proc = subprocess.run(
        [sys.executable, "-c", _python_block()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"^\d ", ln)]
    assert [ln.split()[0] for ln in lines] == ["1", "2", "3"], proc.stdout
    assert all(" - " in ln and ln.split(" - ", 1)[1].strip() for ln in lines)
