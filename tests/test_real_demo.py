"""README command 1 (`genre demo`) end to end on ml-latest-small with the default model."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENRE_DEMO_DATA", ROOT.parent / "shared/data/ml-latest-small"))

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(not (DATA / "movies.csv").exists(), reason=f"no MovieLens at {DATA}"),
]


def test_genre_demo(tmp_path: Path):
    exe = Path(sys.executable).parent / "genre"
    proc = subprocess.run(
        [
            str(exe),
            "demo",
            "--data",
            str(DATA),
            "--json",
            "--set",
            f"store.path={tmp_path / 'chroma'}",
            "--set",
            f"store.interactions_path={tmp_path / 'i.sqlite'}",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demo ok: 10 distinct items, none from user 1's history" in proc.stderr
    import json

    result = json.loads(proc.stdout)
    assert len({i["item"]["id"] for i in result["items"]}) == 10
    assert all(i["rationale"].strip() for i in result["items"])
