"""A scripted 4-turn chat through the CLI (subprocess, stdin) on the whole ml-latest-small
catalog in an embedded Chroma, with the real embedder and the real default model
(qwen2.5-coder-0.5b on vLLM).

With the shipped ``chat.intent = "normaliser"`` no message goes to the LLM for its intent
(exact wishes of the first turn asserted below); the fifth message has a word the lexicon
does not know and is read as far as the normaliser can (no genre, "cry" left over).
The model's intents vary; the invariants checked here hold for any schema-valid intent:
every pick satisfies that turn's filters, no item is shown twice (unless the intent asked),
rejected picks never come back, references resolve to the previous reply's picks, and the
session resumes in a new process. Slow: about 8 minutes on 2 cores (index ~100 s, two
vLLM loads ~60 s each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genre_agent import Recommender, load_movielens_items
from genre_agent.config import load_config
from genre_agent.service.chat import Intent, SessionStore, matches_where

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENRE_DEMO_DATA", ROOT.parent / "shared/data/ml-latest-small"))
pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(not (DATA / "movies.csv").exists(), reason=f"no MovieLens at {DATA}"),
]
TURNS = [
    "something like Alien but funnier, not older than 2000",
    "more like the second one",
    "not that one, the first one",
    "no horror please, something with comedy",
    "I need a good cry",
]


def _catalog():
    return load_movielens_items(DATA)


def _run(tmp: Path, lines: list[str], session: str | None = None) -> list[str]:
    sets = {
        "store.kind": "embedded",
        "store.path": str(tmp / "chroma"),
        "store.collection": "chatreal",
        "store.interactions_path": str(tmp / "i.sqlite"),
        "retrieval.n_candidates": 8,
        # No interactions are loaded here: the content sources.
        "retrieval.sources": '{"embedding": 1.0, "bm25": 0.5}',
        "chat.k": 3,
        "chat.sessions_path": str(tmp / "chat.sqlite"),
    }
    cmd = [sys.executable, "-m", "genre_agent.cli.chat", "chat", "--json"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    if session:
        cmd += ["--session", session]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run(
        cmd,
        input="\n".join([*lines, "/quit"]) + "\n",
        capture_output=True,
        text=True,
        cwd=tmp,
        env=env,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def test_four_turn_chat_real_model(tmp_path: Path) -> None:
    items = _catalog()
    cfg = load_config(
        {
            "store": {
                "kind": "embedded",
                "path": str(tmp_path / "chroma"),
                "collection": "chatreal",
                "interactions_path": str(tmp_path / "i.sqlite"),
            },
            "retrieval": {"sources": {"embedding": 1.0, "bm25": 0.5}},
        },
        use_env=False,
    )
    rec = Recommender.from_config(cfg)
    rec.index(items)
    rec.close()
    meta = {it.id: it.metadata for it in items}

    out1 = _run(tmp_path, TURNS[:2])
    sid = out1[0].split()[1]
    out2 = _run(tmp_path, TURNS[2:], session=sid)
    assert out2[0].startswith(f"session: {sid} (resumed, 2 turns)")
    turns = [json.loads(line) for line in out1[1:-1] + out2[1:-1]]
    assert [t["message"] for t in turns] == TURNS
    for t in turns:
        print(t["n"], t["intent"], t["where"], [p["title"] for p in t["picks"]], t["error"])

    state = SessionStore(tmp_path / "chat.sqlite").load(sid)
    assert [t.message for t in state.turns] == TURNS  # persisted across the restart
    assert sum(bool(t["picks"]) for t in turns) >= 2, "the chat produced almost nothing"
    assert any(t["where"] for t in turns), "no turn applied a metadata filter"
    seen: set[str] = set()
    rejected_at: dict[str, int] = {}
    prev_picks: list[str] = []
    for t in turns:
        intent = Intent.model_validate(t["intent"])  # schema-valid every turn
        ids = [p["id"] for p in t["picks"]]
        assert set(ids) <= set(meta), "a pick outside the indexed catalog"
        assert len(ids) == len(set(ids))
        for i in ids:
            assert matches_where(meta[i], t["where"]), (i, meta[i], t["where"])
            assert i not in rejected_at, f"{i} was rejected in turn {rejected_at.get(i)}"
        if not intent.repeat_ok:
            assert not set(ids) & seen, f"turn {t['n']} repeated {set(ids) & seen}"
        for pos in intent.exclude_picks:
            rejected_at[prev_picks[pos - 1]] = t["n"]
            assert prev_picks[pos - 1] in state.rejected
            assert prev_picks[pos - 1] not in ids
        for pos in intent.more_like:
            ref = prev_picks[pos - 1]
            assert ref in state.seeds or ref in state.rejected
        seen |= set(ids)
        if ids:
            prev_picks = ids
    assert set(state.shown) == seen
    # The shipped reader: the normaliser settled the first turn exactly, without the LLM.
    first = turns[0]
    assert first["read_by"] == "normaliser" and first["intent_prompt_sha256"] == ""
    assert first["intent"]["year_min"] == 2000 and first["intent"]["genres_include"] == ["Comedy"]
    assert first["reading"]["references"] == ["1214"]  # Alien (1979), found in the catalog
    for p in first["picks"]:
        genres = set(str(meta[p["id"]]["genres"]).split("|"))
        assert p["id"] != "1214" and "Comedy" in genres and genres & {"Horror", "Sci-Fi"}
        assert int(meta[p["id"]]["year"]) >= 2000
    assert turns[3]["intent"]["genres_exclude"] == ["Horror"]
    assert all(t["read_by"] == "normaliser" and not t["intent_prompt_sha256"] for t in turns)
    assert turns[4]["reading"]["leftover"] == ["cry"]
