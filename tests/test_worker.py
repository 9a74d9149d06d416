"""The fitting worker (service/worker.py, `genre worker`): it refits when at least
fit.min_new_interactions new interactions arrived, publishes a new provenance, logs one line
per cycle and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from test_cache import make_rec
from typer.testing import CliRunner

from genre_agent.cli.main import app
from genre_agent.service.cached import CachedAnswers
from genre_agent.service.fit import model_token, provenance
from genre_agent.service.worker import due, latest_users, run_cycle, run_worker
from genre_agent.storage.cache import MemoryCache
from genre_agent.storage.interactions import Interaction

runner = CliRunner()


def _add(rec: Any, n: int, tag: str) -> None:
    ids = sorted(rec.sources.catalog())
    rec.interactions.add([Interaction(f"{tag}{m}", ids[m % 40], 100.0 + m, 5.0) for m in range(n)])


def test_a_cycle_refits_only_when_enough_new_interactions_arrived(
    tmp_path: Path, catalog_path: Path
) -> None:
    rec = make_rec(tmp_path, catalog_path, **{"fit.min_new_interactions": 10})
    cfg = rec.config
    v1, p1 = model_token(cfg, "itemknn"), provenance(cfg, "itemknn")
    assert p1 is not None
    _add(rec, 9, "a")  # too few
    quiet = run_cycle(rec)
    assert not quiet.refit and model_token(cfg, "itemknn") == v1
    assert "+9, below fit.min_new_interactions = 10; no refit" in quiet.line(10)
    _add(rec, 1, "b")  # now 10 new
    done = run_cycle(rec)
    assert done.refit and [r.kind for r in done.reports] == ["itemknn"]
    v2, p2 = model_token(cfg, "itemknn"), provenance(cfg, "itemknn")
    assert v2 != v1 and p2 is not None and p2["interactions"] == p1["interactions"] + 10
    assert "refit itemknn" in done.line(10)
    assert not run_cycle(rec).refit  # caught up
    rec.close()


def test_the_rule() -> None:
    assert due(5, None, 100)  # a model is missing
    assert not due(0, None, 100)  # nothing to fit on
    assert not due(150, 100, 100) and due(200, 100, 100)
    assert due(0 + 1, 101, 100)  # users forgotten: the model holds rows that are gone


def test_after_a_refit_the_cache_is_warmed_and_refreshed(
    tmp_path: Path, catalog_path: Path
) -> None:
    rec = make_rec(tmp_path, catalog_path, **{"fit.min_new_interactions": 5, "fit.warm_users": 3})
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=10)
    assert cached.recommend(user_id="u0").trace.cache == "miss"
    _add(rec, 5, "w")
    cycle = run_cycle(rec, cached.warm)
    assert cycle.refit and cycle.warmed == 3
    assert latest_users(rec, 3) == ["w4", "w3", "w2"]
    for user in ("w4", "w3", "w2"):
        assert cached.recommend(user_id=user).trace.cache == "hit"
    assert cached.recommend(user_id="u0").trace.cache == "miss"  # a new model: refreshed
    rec.close()


def test_run_worker_logs_one_line_per_cycle_and_stops(tmp_path: Path, catalog_path: Path) -> None:
    rec = make_rec(tmp_path, catalog_path, **{"fit.every_s": 5.0})
    lines: list[str] = []
    slept: list[float] = []
    n = run_worker(rec, lambda: len(lines) >= 3, lines.append, sleep=slept.append)
    assert n == 3 and len(lines) == 3
    assert sum(slept) == 10.0  # two waits of fit.every_s between three cycles
    rec.close()


def _sets(tmp_path: Path) -> list[str]:
    pairs = [
        "llm.engine=fake",
        "embedder.kind=fake",
        f"store.path={tmp_path / 'chroma'}",
        f"store.interactions_path={tmp_path / 'i.sqlite'}",
        f"profile.path={tmp_path / 'p.sqlite'}",
        'retrieval.sources={"itemknn": 1.0, "popularity": 0.5}',
        "ranking.rationale_top_r=0",
        "fit.min_new_interactions=3",
    ]
    return [x for p in pairs for x in ("--set", p)]


def test_genre_worker_once_then_sigterm(tmp_path: Path, catalog_path: Path) -> None:
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,timestamp,rating\nu1,m1,1,5\nu1,m3,2,4.5\nu2,m1,3,4\n")
    assert runner.invoke(app, ["index", str(catalog_path), *_sets(tmp_path)]).exit_code == 0
    res = runner.invoke(app, ["worker", "--once", *_sets(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "no refit" in res.stderr  # nothing stored yet
    from genre_agent.storage.interactions import InteractionStore, read_interactions

    store = InteractionStore(tmp_path / "i.sqlite")
    store.add(read_interactions(inter))
    store.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "genre_agent.cli", "worker", "--every", "0.2", *_sets(tmp_path)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.time() + 240
    while time.time() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if "refit itemknn" in line or not line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    out = "".join(seen) + rest
    assert proc.returncode == 0, out
    assert "interactions 3, no model: refit itemknn" in out
    assert "no refit" in rest or "stopped (signal)" in rest
    assert "stopped (signal)" in out
    assert (tmp_path / "models" / "itemknn" / "provenance.json").exists()


def test_with_the_learned_ranker_a_missing_ranker_is_fitted_and_refreshes_the_cache(
    tmp_path: Path, catalog_path: Path
) -> None:
    from test_learned_ranker import make

    from genre_agent.ranking.learned import ranker_folder
    from genre_agent.storage.models import token

    rec = make(tmp_path, catalog_path)  # sources fitted, no ranker yet
    cycle = run_cycle(rec)
    assert (
        cycle.refit
        and cycle.fitted_on is None
        and cycle.line(100).endswith(
            f"refit {', '.join(r.kind for r in cycle.reports)}, ranker in {cycle.seconds:.1f}s"
        )
    )
    assert token(ranker_folder(rec.config)) is not None
    assert not run_cycle(rec).refit
    cache = MemoryCache()
    cached = CachedAnswers(rec, cache, top_n=10)
    user = rec.interactions.all()[0].user_id
    first = cached.recommend(user_id=user, k=5)
    hit = cached.recommend(user_id=user, k=5)
    assert (first.trace.cache, hit.trace.cache) == ("miss", "hit")
    assert [i.item.id for i in hit.items] == [
        i.item.id for i in rec.recommend(user_id=user, k=5).items
    ]
    from genre_agent.service.learn import fit_ranker

    fit_ranker(rec)  # a new ranker version: the entry is unreachable
    assert cached.recommend(user_id=user, k=5).trace.cache == "miss"
    rec.close()
