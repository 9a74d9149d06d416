"""The CLI under hostile catalog text, bad flags and failing LLM servers (fake LLM, local HTTP)."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from test_cli import _sets as _cli_sets
from typer.testing import CliRunner

import genre_agent.cli.chat as cli_chat
import genre_agent.cli.display as cli_display
import genre_agent.cli.main as cli
from genre_agent.cli.main import app

runner = CliRunner()
EVIL = "Evil [/x] [link=http://evil.example]click[/link] \x1b[31mred \x9b2J \u202egnp.exe"


def _sets(tmp_path: Path, engine: str = "fake") -> list[str]:
    # test_cli's settings (fake embedder, stores under tmp_path), with this engine.
    return [f"llm.engine={engine}" if x == "llm.engine=fake" else x for x in _cli_sets(tmp_path)]


def _index(tmp_path: Path, rows: list[dict] | None = None) -> None:
    catalog = tmp_path / "catalog.jsonl"
    rows = rows or [
        {"id": "h1", "title": "Harmless", "text": "space ship"},
        {"id": "e1", "title": EVIL, "text": "space ship", "metadata": {"note": EVIL}},
        {"id": "e2", "title": "Plain two", "text": "space ship"},
    ]
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = runner.invoke(app, ["index", str(catalog), *_sets(tmp_path)])
    assert res.exit_code == 0, res.output


def _genre(capsys, *args: str) -> tuple[int, str, str]:
    """``genre ARGS`` in this process, through the real entry point; (exit code, out, err)."""
    handler = signal.getsignal(signal.SIGTERM)
    old_argv = sys.argv
    sys.argv = ["genre", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old_argv
        signal.signal(signal.SIGTERM, handler)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- terminal-safe output ------------------------------------------------------------------


def test_catalog_text_is_printed_as_text_not_markup(tmp_path: Path, capsys, monkeypatch):
    _index(tmp_path)
    monkeypatch.setattr(cli_display, "out", Console(width=400))  # no wrapping inside the title
    code, out, err = _genre(capsys, "recommend", "--history", "h1", "-k", "2", *_sets(tmp_path))
    assert code == 0, err
    assert "[/x]" in out and "[link=http://evil.example]click[/link]" in out
    assert "\\x1b[31mred" in out and "\\x9b2J" in out and "\\u202egnp.exe" in out
    assert not {"\x1b", "\x9b", "\u202e"} & set(out + err)


def test_no_styles_or_links_from_catalog_text_on_a_terminal(tmp_path: Path, monkeypatch):
    _index(tmp_path)
    # A real terminal: rich would turn [link=...] into an OSC 8 hyperlink and pass ESC through.
    monkeypatch.setattr(cli_display, "out", Console(force_terminal=True, width=400))
    res = runner.invoke(app, ["recommend", "--history", "h1", "-k", "2", *_sets(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "\x1b]8;" not in res.stdout and "evil.example\x1b" not in res.stdout
    assert "\x1b[31mred" not in res.stdout and "\\x1b[31mred" in res.stdout


def test_json_output_is_valid_and_escapes_every_control(tmp_path: Path, capsys):
    _index(tmp_path)
    args = ["recommend", "--history", "h1", "-k", "2", "--json", *_sets(tmp_path)]
    code, out, err = _genre(capsys, *args)
    assert code == 0, err
    titles = {i["item"]["id"]: i["item"]["title"] for i in json.loads(out)["items"]}
    assert titles["e1"] == EVIL  # the data is intact; only its spelling is escaped
    assert not {"\x1b", "\x9b", "\u202e"} & set(out)


def test_chat_prints_catalog_text_with_controls_escaped(capsys):
    pick = SimpleNamespace(id="e1", title=EVIL, rationale="why \x1b]8;;http://x\x07")
    cli_chat._print_turn(SimpleNamespace(error="bad \x1b[2J", picks=[pick]))
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    assert "[e1] Evil [/x]" in out and "\\x1b]8;;http://x\\x07" in out


# --- -k like ranking.k ---------------------------------------------------------------------


@pytest.mark.parametrize("k", ["0", "-3", "101"])
def test_k_out_of_range_is_refused(tmp_path: Path, catalog_path: Path, capsys, k: str):
    assert runner.invoke(app, ["index", str(catalog_path), *_sets(tmp_path)]).exit_code == 0
    code, out, err = _genre(capsys, "recommend", "--history", "m1", "-k", k, *_sets(tmp_path))
    assert code == 2 and out == ""
    assert err == f"error: -k must be between 1 and 100 (like ranking.k), got {k}\n"
    # demo checks it before it loads anything.
    code, _, err = _genre(capsys, "demo", "--data", str(tmp_path), "-k", k, *_sets(tmp_path))
    assert code == 2 and err == f"error: -k must be between 1 and 100 (like ranking.k), got {k}\n"


# --- fewer results than asked ----------------------------------------------------------------


def test_fewer_results_and_empty_filter_say_why(tmp_path: Path, catalog_path: Path, capsys):
    assert runner.invoke(app, ["index", str(catalog_path), *_sets(tmp_path)]).exit_code == 0
    base = ["recommend", "--history", "m1", "--json", *_sets(tmp_path)]
    code, out, err = _genre(capsys, *base, "-k", "10", "--where", '{"year": {"$gt": 2015}}')
    assert code == 0, err
    assert len(json.loads(out)["items"]) == 3  # stdout stays one JSON document
    assert (
        'note: 3 of 10 asked: only 3 candidates matched the filter {"year": {"$gt": 2015}}' in err
    )
    code, out, err = _genre(capsys, *base, "--where", '{"year": {"$gt": 3000}}')
    assert code == 0 and json.loads(out)["items"] == []
    assert 'note: 0 of 10 asked: no item matched the filter {"year": {"$gt": 3000}}' in err
    code, out, err = _genre(capsys, *base, "-k", "60")
    assert code == 0 and len(json.loads(out)["items"]) == 49
    assert "note: 49 of 60 asked: only 49 candidates are left once the user's history" in err
    code, out, err = _genre(capsys, *base, "-k", "5")
    assert code == 0 and "note:" not in err


# --- errors: one line naming the cause, --debug for the traceback ---------------------------


_BOUND: list[socket.socket] = []


def _free_port() -> int:
    """A port nobody answers on: bound here and never listened on, for the whole session.
    (A port that is bound, closed and then dialled can be handed out as the dialling
    socket's own ephemeral port: the connect then reaches itself and hangs, "no answer
    within 0.5 s" instead of "cannot connect", as one full fast-suite run showed.)"""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _BOUND.append(s)
    return int(s.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        body = b'{"error": {"message": "model is overloaded\\n<html>...</html>"}}'
        try:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (the timeout case)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def llm_server() -> Iterator[str]:
    """A loopback server that answers 503 (or, under /slow, answers late)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = False  # server_close() waits for the slow handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _openai_sets(tmp_path: Path, base_url: str) -> list[str]:
    return [
        *_sets(tmp_path, engine="openai"),
        "--set",
        f"llm.base_url={base_url}",
        "--set",
        "llm.max_retries=0",
        "--set",
        "llm.request_timeout_s=0.5",
    ]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_llm_server_errors_are_one_line_with_engine_and_url(tmp_path: Path, capsys, llm_server):
    _index(tmp_path)
    args = ["recommend", "--history", "h1", "-k", "2"]
    down = f"http://127.0.0.1:{_free_port()}/v1"
    code, out, err = _genre(capsys, *args, *_openai_sets(tmp_path, down))
    line = _one_error_line(err)
    # The ranked list streams first (it needs no LLM); the rationales then fail.
    assert code == 2 and "Recommendations" in out
    # The engine names itself, the URL and the cause (genre_agent/llm/faults.py).
    assert line.startswith(f"error: engine 'openai' at {down}: cannot connect")
    assert "Connection refused" in line
    code, _, err = _genre(capsys, *args, *_openai_sets(tmp_path, llm_server + "/v1"))
    line = _one_error_line(err)
    assert code == 2 and "HTTP 503" in line
    assert f"at {llm_server}/v1" in line
    code, _, err = _genre(capsys, *args, *_openai_sets(tmp_path, llm_server + "/slow/v1"))
    assert code == 2 and "no answer within" in _one_error_line(err)


def test_debug_prints_the_traceback(tmp_path: Path, capsys):
    _index(tmp_path)
    down = f"http://127.0.0.1:{_free_port()}/v1"
    args = ["recommend", "--history", "h1", "-k", "2", *_openai_sets(tmp_path, down)]
    code, _, err = _genre(capsys, "--debug", *args)
    assert code == 2
    assert "Traceback (most recent call last)" in err and "openai.APIConnectionError" in err
    code, _, err = _genre(capsys, "--debug", "recommend", "-k", "0", *_sets(tmp_path))
    assert code == 2 and "Traceback" in err and "GenreError: -k must be between" in err


@pytest.mark.parametrize("module", ["httpx", "httpx2"])  # openai's client uses httpx2
def test_httpx_errors_are_one_line(tmp_path: Path, capsys, monkeypatch, module: str):
    import importlib

    from genre_agent.service.recommender import Recommender

    http = importlib.import_module(module)
    _index(tmp_path)

    def fail(self, **kwargs):
        raise http.ReadError("connection reset\nby peer")

    monkeypatch.setattr(Recommender, "recommend_stream", fail)
    code, _, err = _genre(capsys, "recommend", "--history", "h1", *_sets(tmp_path))
    line = _one_error_line(err)
    assert code == 2 and "ReadError: connection reset by peer" in line
    assert line.startswith("error: HTTP error (LLM engine fake, base URL -; store embedded): ")

    def fail_at(self, **kwargs):  # with its request, the error names the URL it was for
        raise http.ConnectError("refused", request=http.Request("GET", "http://127.0.0.1:8000/x"))

    monkeypatch.setattr(Recommender, "recommend_stream", fail_at)
    code, _, err = _genre(capsys, "recommend", "--history", "h1", *_sets(tmp_path))
    line = _one_error_line(err)
    assert (
        code == 2 and line == "error: HTTP error at http://127.0.0.1:8000/x: ConnectError: refused"
    )


def test_chat_reports_a_failed_turn_and_goes_on(tmp_path: Path, monkeypatch):
    import httpx
    import openai
    from test_chat import make_rec

    from genre_agent.service.chat import scripted_intents

    answer = scripted_intents()
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        if calls["n"] == 1:
            raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9"))
        return answer(req)

    rec = make_rec(tmp_path, flaky, name="chatflaky")
    monkeypatch.setattr(cli_chat, "_recommender", lambda cfg: rec)
    args = ["chat", "--set", f"chat.sessions_path={tmp_path / 'chat.sqlite'}"]
    res = runner.invoke(app, args, input="sci-fi please\nsci-fi please\n/quit\n")
    assert res.exit_code == 0, res.output
    assert "error: LLM server error (engine" in res.stderr
    assert "APIConnectionError" in res.stderr and "the session goes on" in res.stderr
    assert "1. [" in res.stdout and "bye; resume with --session" in res.stdout
