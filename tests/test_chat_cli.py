"""The chat REPL and profile commands end to end through typer's CliRunner (scripted LLM)."""

from __future__ import annotations

import json
import re

from test_chat import SCRIPT, catalog, make_rec
from typer.testing import CliRunner

import genre_agent.cli.chat as cli_chat
from genre_agent.cli.main import app as main_app
from genre_agent.service.chat import SessionStore, scripted_intents

runner = CliRunner()


def picks(output: str) -> list[str]:
    return re.findall(r"^\s+\d+\. \[([^\]]+)\]", output, flags=re.M)


def test_chat_repl_four_turns_and_resume(tmp_path, monkeypatch) -> None:
    rec = make_rec(tmp_path, scripted_intents(SCRIPT), name="clichat", **{"chat.k": 2})
    rec.close = lambda: None  # the same in-memory store serves both "processes"
    monkeypatch.setattr(cli_chat, "_recommender", lambda cfg: rec)
    db = tmp_path / "chat.sqlite"
    args = ["chat", "--set", f"chat.sessions_path={db}"]
    turns = list(SCRIPT)
    r1 = runner.invoke(main_app, args, input="\n".join(turns[:2]) + "\n/quit\nnever sent\n")
    assert r1.exit_code == 0, r1.output
    sid = re.search(r"session: (\w+)", r1.output).group(1)
    first = picks(r1.output)
    assert len(first) == 4
    meta = {it.id: it.metadata for it in catalog()}
    assert all(meta[i]["year"] >= 2000 and meta[i].get("genre_comedy") for i in first)
    assert "never sent" not in json.dumps(SessionStore(db).load(sid).model_dump())
    # Restart: a new invocation resumes the session; references use the stored last picks.
    r2 = runner.invoke(main_app, [*args, "--session", sid], input="\n".join(turns[2:]) + "\n")
    assert r2.exit_code == 0, r2.output
    assert "resumed, 2 turns" in r2.output
    second = picks(r2.output)
    assert second and not set(second) & set(first)
    state = SessionStore(db).load(sid)
    assert len(state.turns) == 4 and state.rejected == [first[2]]
    assert all(1980 <= meta[i]["year"] <= 1999 for i in picks(r2.output)[1:])


def test_profile_commands(tmp_path, monkeypatch) -> None:
    from genre_agent.storage.interactions import Interaction

    def script(req):
        if req.hint.get("task") == "profile":
            ids = req.hint["history_ids"]
            return json.dumps(
                {
                    "liked": [{"topic": "Sci-Fi", "evidence": ids[:2]}],
                    "disliked": [],
                    "summary": "Likes science fiction.",
                }
            )
        return scripted_intents()(req)

    rec = make_rec(tmp_path, script, name="cliprof")
    rec.close = lambda: None
    rec.add_interactions([Interaction("u1", str(i), float(i), 5.0) for i in (1, 2, 6)])
    monkeypatch.setattr(cli_chat, "_recommender", lambda cfg: rec)
    pset = ["--set", f"profile.path={tmp_path / 'p.sqlite'}"]
    r = runner.invoke(main_app, ["profile", "show", "u1", *pset])
    assert r.exit_code != 0
    r = runner.invoke(main_app, ["profile", "build", "u1", *pset])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["profile"]["liked"][0]["evidence"] == ["1", "2"]
    r = runner.invoke(main_app, ["profile", "forget", "u1", "--item", "1", *pset])
    assert r.exit_code == 0 and "forgot 1" in r.output
    shown = json.loads(runner.invoke(main_app, ["profile", "show", "u1", *pset]).output)
    assert shown["forgotten"] == ["1"] and shown["profile"]["liked"][0]["evidence"] == ["2"]
    r = runner.invoke(main_app, ["profile", "build", "u1", *pset])
    assert json.loads(r.output)["profile"]["liked"][0]["evidence"] == ["2", "6"]
    edited = '{"liked": [], "disliked": [{"topic": "Horror", "evidence": []}], "summary": "s"}'
    r = runner.invoke(main_app, ["profile", "edit", "u1", "--file", "-", *pset], input=edited)
    assert r.exit_code == 0 and json.loads(r.output)["edited"] is True
    r = runner.invoke(main_app, ["profile", "forget", "u1", *pset])
    assert "deleted" in r.output
