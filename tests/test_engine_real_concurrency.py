"""Concurrent callers on the real default model (vLLM in process) through one EngineOwner:
8 chat sessions x 2 turns in 8 threads, and 8 concurrent recommend calls, over one
Recommender. Before the owner, 8 threads crashed vLLM's engine-core input thread and 0 of
16 turns finished. Slow: a few minutes on 2 cores. Wall time and engine batches are
printed (run with -s).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from genre_agent import Recommender
from genre_agent.catalog.items import genre_key, load_items
from genre_agent.config import LLMConfig, load_config
from genre_agent.llm import get_engine
from genre_agent.llm.owner import EngineOwner
from genre_agent.service.chat import ChatSession, SessionState, SessionStore, matches_where

pytestmark = pytest.mark.real

# Genres with at least 8 items in tests/fixtures/catalog.jsonl (2 turns x 3 picks fit).
GENRES = ["Comedy", "Sci-Fi", "Action", "Drama", "Adventure", "Horror", "Thriller", "Romance"]
HISTORIES = [["m1", "m3"], ["m2", "m14"], ["m44"], ["m5", "m6"]] * 2
JOIN_S = 1500  # far above the expected few minutes: a hang fails instead of blocking CI


@pytest.fixture(scope="module")
def engine() -> EngineOwner:
    llm = get_engine(LLMConfig(engine="vllm"))
    assert isinstance(llm, EngineOwner)
    return llm


@pytest.fixture()
def rec(tmp_path: Path, catalog_path: Path, engine: EngineOwner):
    cfg = load_config(
        {
            "store": {
                "kind": "memory",
                "collection": f"conc{tmp_path.name[-20:]}",
                "interactions_path": str(tmp_path / "i.sqlite"),
            },
            # The fixture catalog has no interactions: the content sources.
            "retrieval": {"n_candidates": 8, "sources": {"embedding": 1.0, "bm25": 0.5}},
            # Never relax the genre: every pick must satisfy the session's constraint.
            "chat": {"k": 3, "relax_genres": False, "sessions_path": str(tmp_path / "c.sqlite")},
        },
        use_env=False,
    )
    r = Recommender.from_config(cfg, llm=engine)
    r.index(catalog_path)
    yield r
    r.close()


def _threads(fns: list[Any]) -> tuple[dict[int, Any], dict[int, BaseException], float]:
    results: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}

    def run(i: int) -> None:
        try:
            results[i] = fns[i]()
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(fns))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_S)
    wall = time.perf_counter() - t0
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return results, errors, wall


def _report(label: str, engine: EngineOwner, before: tuple[int, int, int], wall: float) -> None:
    s = engine.stats
    print(
        f"\nCONCURRENCY {label}: wall {wall:.1f} s, {s.batches - before[0]} engine batches for "
        f"{s.requests - before[1]} requests from {s.jobs - before[2]} caller calls, "
        f"largest batch {s.largest_batch}"
    )


def test_eight_chat_sessions_two_turns_each(
    rec: Recommender, engine: EngineOwner, tmp_path: Path, catalog_path: Path
):
    meta = {it.id: it.metadata for it in load_items(catalog_path)}
    store = SessionStore(tmp_path / "c.sqlite")
    sessions = []
    for g in GENRES:
        s = ChatSession.start(rec, store)
        s.state.genres_include = [g]  # each session starts with its own genre constraint
        sessions.append(s)
    messages = [
        [f"some {g.lower()} movies please", f"another {g.lower()} one, something different"]
        for g in GENRES
    ]
    before = (engine.stats.batches, engine.stats.requests, engine.stats.jobs)
    fns = [lambda i=i: [sessions[i].send(m) for m in messages[i]] for i in range(8)]
    results, errors, wall = _threads(fns)
    _report("chat 8 sessions x 2 turns", engine, before, wall)
    assert not errors, {i: repr(e) for i, e in errors.items()}
    kept = 0
    for i, turns in results.items():
        g = GENRES[i]
        assert [t.message for t in turns] == messages[i]
        # Replaying this session's own intents from its own start state gives each turn's
        # filter: nothing from another session leaked into it.
        replay = SessionState(id="replay", genres_include=[g])
        for t in turns:
            assert t.intent is not None, t.error
            replay.apply(t.intent)
            assert t.where == replay.where(), (g, t.intent, t.where)
            for p in t.picks:
                assert matches_where(meta[p.id], t.where), (g, p.id, t.where)
            kept += genre_key(g) in str(t.where)
            print(f"  {g:<10} turn {t.n}: where={t.where} picks={[p.title for p in t.picks]}")
            if genre_key(g) in str(t.where):
                assert all(g in p.genres.split("|") for p in t.picks), (g, t.picks)
        assert [t.message for t in store.load(sessions[i].id).turns] == messages[i]
    n_turns = sum(len(t) for t in results.values())
    with_picks = sum(bool(t.picks) for ts in results.values() for t in ts)
    print(f"  {n_turns} turns finished, {with_picks} with picks, {kept} kept their genre")
    assert n_turns == 16
    assert with_picks >= 12, "most turns should recommend something"


def test_eight_concurrent_recommend_calls(rec: Recommender, engine: EngineOwner):
    before = (engine.stats.batches, engine.stats.requests, engine.stats.jobs)
    fns = [lambda h=h: rec.recommend(history=h, k=5) for h in HISTORIES]
    results, errors, wall = _threads(fns)
    _report("8 recommend calls", engine, before, wall)
    assert not errors, {i: repr(e) for i, e in errors.items()}
    assert len(results) == 8
    for i, res in results.items():
        ids = [r.item.id for r in res.items]
        cands = {c.item.id for c in res.trace.candidates}
        assert len(ids) == 5 and len(set(ids)) == 5, ids
        assert set(ids) <= cands and not set(ids) & set(HISTORIES[i])
        assert all(r.rationale and r.rationale.strip() for r in res.items)
    # Callers overlapped in the queue: fewer engine calls than caller calls.
    assert engine.stats.batches - before[0] < engine.stats.jobs - before[2]
