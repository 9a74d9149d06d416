"""Cold start is one rule in the service: the same new user gets the same answer from
every door (Python, CLI, HTTP, the evaluation harness), and a stored user whose history
left the catalog gets it too, with a note."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from genre_agent import Recommender
from genre_agent.cli.main import app
from genre_agent.config import EmbedderConfig, load_config
from genre_agent.embedders.fake import FakeEmbedder
from genre_agent.http.app import create_app
from genre_agent.http.service import Service
from genre_agent.llm import FakeLLM
from genre_agent.service.requests import RecRequest
from genre_agent.service.stages.resolve import COLD_NOTE
from genre_agent.storage.interactions import Interaction
from genre_eval.datasets import DatasetConfig, load_dataset
from genre_eval.fixtures import write_jsonl_dataset
from genre_eval.world import EvalWorld

SOURCES = {"embedding": 1.0, "popularity": 0.5}
K = 4


def _tree(tmp_path: Path) -> dict[str, Any]:
    return {
        "store": {
            "kind": "embedded",
            "path": str(tmp_path / "chroma"),
            "interactions_path": str(tmp_path / "i.sqlite"),
        },
        "profile": {"path": str(tmp_path / "p.sqlite")},
        "chat": {"sessions_path": str(tmp_path / "chat.sqlite")},
        "llm": {"engine": "fake"},
        "embedder": {"kind": "fake"},
        "retrieval": {"sources": SOURCES},
        "ranking": {"rationale_top_r": 0},
        "service": {"queue_metrics": False},
    }


@pytest.fixture()
def world(tmp_path: Path) -> tuple[EvalWorld, Recommender]:
    """The harness's world (a dataset's catalog and training interactions) and a served
    Recommender over the same catalog and interactions."""
    data = write_jsonl_dataset(tmp_path / "data")
    ds = load_dataset(DatasetConfig(kind="jsonl", path=data))
    w = EvalWorld(ds, EmbedderConfig(kind="fake"))
    rec = Recommender.from_config(_tree(tmp_path), llm=FakeLLM("first"), embedder=FakeEmbedder())
    rec.index(list(ds.items.values()))
    rec.add_interactions(w.train)
    return w, rec


def _ids(items: list[Any]) -> list[str]:
    return [it.item.id if hasattr(it, "item") else it["item"]["id"] for it in items]


def _popular(rec: Recommender) -> list[str]:
    counts = rec.interactions.item_counts()
    return sorted(counts, key=lambda i: (-counts[i], i))[:K]


def test_python_door(world) -> None:
    _, rec = world
    out = rec.recommend(user_id="newbie", k=K)
    assert out.trace.strategy == "popular" and out.trace.ranked_by == "popularity"
    assert COLD_NOTE in out.trace.notes
    assert _ids(out.items) == _popular(rec)


def test_http_door(world) -> None:
    _, rec = world
    expected = _popular(rec)  # the app closes the stores on exit
    # TestClient's default Host (testserver) is not an allowed host; localhost is.
    app = create_app(service=Service(rec.config, rec))
    with TestClient(app, base_url="http://localhost") as client:
        got = client.get("/v1/recommend/newbie", params={"k": K})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["trace"]["strategy"] == "popular" and COLD_NOTE in body["trace"]["notes"]
    assert _ids(body["items"]) == expected


def test_cli_door(world, tmp_path: Path) -> None:
    _, rec = world
    sets = [
        "--set",
        f"store.path={tmp_path / 'chroma'}",
        "--set",
        f"store.interactions_path={tmp_path / 'i.sqlite'}",
        "--set",
        f"profile.path={tmp_path / 'p.sqlite'}",
        "--set",
        "llm.engine=fake",
        "--set",
        "embedder.kind=fake",
        "--set",
        f"retrieval.sources={json.dumps(SOURCES)}",
    ]
    res = CliRunner().invoke(app, ["recommend", "--user", "newbie", "-k", str(K), "--json", *sets])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["trace"]["strategy"] == "popular"
    assert "cold start: strategy popular (0 stored interactions)" in res.stderr
    assert _ids(body["items"]) == _popular(rec)


def test_harness_door(world, tmp_path: Path) -> None:
    w, rec = world
    cfg = load_config({k: v for k, v in _tree(tmp_path).items() if k != "store"})
    served = w.recommender(cfg)
    [out] = served.recommend_many([RecRequest(user_id="newbie", history=[], k=K)])
    assert out.trace.strategy == "popular" and COLD_NOTE in out.trace.notes
    assert _ids(out.items) == _popular(rec)


def test_a_user_whose_items_all_left_the_catalog_gets_the_cold_answer(world) -> None:
    _, rec = world
    rec.add_interactions([Interaction("gone", "m-old-1", 1.0), Interaction("gone", "m-old-2", 2.0)])
    out = rec.recommend(user_id="gone", k=K)
    assert out.trace.strategy == "popular" and _ids(out.items) == _popular(rec)
    assert any("none of the user's 2 history items is in the catalog" in n for n in out.trace.notes)
    # A history the caller passes that the catalog does not know is still an error.
    with pytest.raises(Exception, match="not in the index"):
        rec.recommend(history=["m-old-1"], k=K)
