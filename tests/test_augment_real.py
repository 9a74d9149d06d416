"""Enrichment, cold start, profiles and the LangChain retriever and tool on the real default
model (vLLM in process) and real Chroma, embedded and `chroma run` server, through the CLI
where the product has one. Slow: a few minutes on 2 cores per store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda
from servers import chroma_server
from typer.testing import CliRunner

from genre_agent import Recommender
from genre_agent.cli.main import app
from genre_agent.config import LLMConfig, load_config
from genre_agent.llm import get_engine
from genre_agent.service.langchain_interop import GenreRetriever, make_recommend_tool

pytestmark = pytest.mark.real


def json_or_str(v: str) -> object:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


runner = CliRunner()
FEW = ["m1", "m3"]  # Alien, The Terminator


@pytest.fixture(scope="module")
def vllm_engine():
    return get_engine(LLMConfig(engine="vllm"))


@pytest.fixture(params=["embedded", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "embedded":
        yield {"store.kind": "embedded", "store.path": str(tmp_path / "chroma")}
        return
    with chroma_server(tmp_path) as port:
        yield {"store.kind": "http", "store.port": str(port)}


def test_enrich_cold_start_profile_langchain(
    tmp_path: Path, catalog_path: Path, store: dict[str, str], vllm_engine
) -> None:
    settings = {
        **store,
        "store.interactions_path": str(tmp_path / "i.sqlite"),
        "profile.path": str(tmp_path / "p.sqlite"),
        "retrieval.n_candidates": "20",
        "enrich.enabled": "true",
    }
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={v}")]
    inter = tmp_path / "inter.csv"
    inter.write_text(
        "user_id,item_id,timestamp,rating\n"
        + "".join(f"few,{m},{n},5\n" for n, m in enumerate(FEW))
    )
    res = runner.invoke(app, ["index", str(catalog_path), "--interactions", str(inter), *sets])
    assert res.exit_code == 0, res.output

    # Enrichment: the real model writes summaries and keywords, stored with the items.
    res = runner.invoke(
        app, ["enrich", "--limit", "3", "--checkpoint", str(tmp_path / "e.jsonl"), *sets]
    )
    assert res.exit_code == 0, res.output
    cfg = load_config(
        None, overrides={k: json_or_str(v) for k, v in settings.items()}, use_env=False
    )
    rec = Recommender.from_config(cfg, llm=vllm_engine)
    enriched = [
        i
        for i in rec.store.get([f"m{n}" for n in range(1, 51)]).values()
        if i.metadata.get("enriched")
    ]
    assert enriched, "no item was enriched"
    assert all("Keywords:" in i.text for i in enriched)

    # Cold start through the CLI: 2 stored interactions -> a profile of those two items
    # (cold.min_history = 6: at most five stored items are cold).
    cold = [*sets, "--set", "cold.min_history=6"]
    res = runner.invoke(app, ["recommend", "--user", "few", "-k", "3", "--json", *cold])
    assert res.exit_code == 0, res.output
    assert "cold start: strategy few (2 stored interactions)" in res.stderr
    items = json.loads(res.stdout)["items"]
    ids = [i["item"]["id"] for i in items]
    assert len(ids) == 3 == len(set(ids)) and not set(ids) & set(FEW)
    assert all(i["rationale"].strip() for i in items)
    # A new user with a stated request.
    res = runner.invoke(app, ["recommend", "--user", "new", "-q", "a funny film", "-k", "2", *sets])
    assert res.exit_code == 0, res.output
    assert "strategy stated" in res.stderr

    # The profile the cold start built is stored; its evidence is the user's own items.
    shown = runner.invoke(app, ["profile", "show", "few", *sets])
    assert shown.exit_code == 0, shown.output
    prof = json.loads(shown.stdout)
    evidence = {e for t in prof["profile"]["liked"] for e in t["evidence"]}
    assert evidence <= set(FEW) and prof["profile"]["summary"].strip()
    assert prof["model_id"] and prof["template_sha256"]
    # Forgetting an item removes it from the evidence and from every rebuild.
    res = runner.invoke(app, ["profile", "forget", "few", "--item", "m1", *sets])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["profile", "build", "few", "--force", *sets])
    assert res.exit_code == 0, res.output
    prof = json.loads(runner.invoke(app, ["profile", "show", "few", *sets]).stdout)
    assert prof["forgotten"] == ["m1"]
    assert "m1" not in {e for t in prof["profile"]["liked"] for e in t["evidence"]}

    # LangChain: the retriever inside a chain, and the tool, on the real model.
    retriever = GenreRetriever(recommender=rec, k=2)
    chain = RunnableLambda(lambda x: x["want"]) | retriever
    docs = chain.invoke({"want": "a space adventure"})
    assert len(docs) == 2 and all(d.metadata["rationale"] for d in docs)
    tool = make_recommend_tool(rec)
    out = tool.invoke({"query": "horror", "k": 2})
    assert len(out.splitlines()) == 2
    rec.close()
