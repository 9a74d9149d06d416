"""The CLI end to end on fakes (CliRunner), plus the error paths users hit first."""

import json
from pathlib import Path

from typer.testing import CliRunner

from genre_agent.cli.main import app

runner = CliRunner()


def _sets(tmp_path: Path) -> list[str]:
    return [
        "--set",
        "llm.engine=fake",
        "--set",
        "embedder.kind=fake",
        "--set",
        f"store.path={tmp_path / 'chroma'}",
        "--set",
        f"store.interactions_path={tmp_path / 'i.sqlite'}",
        "--set",
        f"profile.path={tmp_path / 'p.sqlite'}",
        # The fixture catalog comes without interactions: content sources only.
        "--set",
        'retrieval.sources={"embedding": 1.0}',
    ]


def test_index_then_recommend_json(tmp_path: Path, catalog_path: Path):
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,timestamp,rating\nu1,m1,1,5\nu1,m3,2,4.5\nu1,m20,3,1\n")
    res = runner.invoke(
        app, ["index", str(catalog_path), "--interactions", str(inter), *_sets(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["recommend", "--user", "u1", "-k", "4", "--json", *_sets(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ids = [i["item"]["id"] for i in data["items"]]
    assert len(ids) == 4 and not {"m1", "m3", "m20"} & set(ids)
    # The default ranks by the fused sources and has the LLM explain the list.
    assert data["trace"]["ranked_by"] == "retrieval"
    assert data["trace"]["template"] == "explain_evidence"
    assert all(i["rationale"] for i in data["items"])


def test_recommend_table_with_where(tmp_path: Path, catalog_path: Path):
    assert runner.invoke(app, ["index", str(catalog_path), *_sets(tmp_path)]).exit_code == 0
    res = runner.invoke(
        app,
        [
            "recommend",
            "--history",
            "m1",
            "-k",
            "2",
            "--where",
            '{"genre_romance": true}',
            *_sets(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Recommendations" in res.stdout


def test_bad_config_key_and_bad_catalog_are_clear_errors(tmp_path: Path):
    import subprocess
    import sys

    bad = tmp_path / "bad.csv"
    bad.write_text("id,title\nx1,Fine\nx2,\n")
    exe = Path(sys.executable).parent / "genre"
    proc = subprocess.run(
        [str(exe), "index", str(bad), *_sets(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "bad.csv:3: field 'title'" in proc.stderr.replace("\n", " ")
    proc = subprocess.run(
        [str(exe), "recommend", "-q", "x", "--set", "llm.engnie=fake"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "llm.engnie: unknown key" in proc.stderr


def test_recommend_routes_cold_users_by_history_length(tmp_path: Path, catalog_path: Path):
    """0 stored interactions: the stated request, or the popular items without one; 1-5: a
    profile of those few; more: history."""
    inter = tmp_path / "inter.csv"
    rows = ["user_id,item_id,timestamp,rating", "few,m1,1,5", "few,m3,2,4.5"]
    rows += [f"many,m{n},{n},4" for n in range(1, 8)]
    inter.write_text("\n".join(rows) + "\n")
    res = runner.invoke(
        app, ["index", str(catalog_path), "--interactions", str(inter), *_sets(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    # Nothing stored, nothing asked: the most popular items (m1 and m3 have 2 users each).
    new = runner.invoke(app, ["recommend", "--user", "nobody", "-k", "2", *_sets(tmp_path)])
    assert new.exit_code == 0, new.output
    assert "cold start: strategy popular (0 stored interactions)" in new.stderr
    assert "ranked by popular (cold start: no history or query)" in new.stderr
    new_json = runner.invoke(
        app, ["recommend", "--user", "nobody", "-k", "2", "--json", *_sets(tmp_path)]
    )
    got = json.loads(new_json.stdout)
    assert [i["item"]["id"] for i in got["items"]] == ["m1", "m3"]
    assert got["trace"]["strategy"] == "popular" and got["trace"]["ranked_by"] == "popularity"
    stated = runner.invoke(
        app, ["recommend", "--user", "nobody", "-q", "space", "-k", "2", *_sets(tmp_path)]
    )
    assert stated.exit_code == 0, stated.output
    assert "cold start: strategy stated (0 stored interactions)" in stated.stderr
    few = runner.invoke(app, ["recommend", "--user", "few", "-k", "2", "--json", *_sets(tmp_path)])
    assert few.exit_code == 0, few.output
    assert "cold start: strategy few (2 stored interactions)" in few.stderr
    ids = [i["item"]["id"] for i in json.loads(few.stdout)["items"]]
    assert len(ids) == 2 and not {"m1", "m3"} & set(ids)
    shown = runner.invoke(app, ["profile", "show", "few", *_sets(tmp_path)])
    assert shown.exit_code == 0 and '"user_id": "few"' in shown.stdout  # stored, reusable
    many = runner.invoke(app, ["recommend", "--user", "many", "-k", "2", *_sets(tmp_path)])
    assert many.exit_code == 0, many.output
    assert "cold start" not in many.stderr
