"""The openai engine against real sockets on 127.0.0.1 that misbehave: a server that accepts
and never answers, a closed port, an HTTP 500; and Ctrl-C / SIGTERM during a call that
would otherwise wait for minutes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from genre_agent.config import LLMConfig
from genre_agent.errors import GenreError
from genre_agent.llm.base import GenRequest, Message, ScoreRequest
from genre_agent.llm.engines import OpenAIEngine
from genre_agent.llm.faults import LLMTimeout, LLMUnavailable

ROOT = Path(__file__).resolve().parents[1]
REQ = GenRequest(messages=(Message("user", "hello"),), max_tokens=8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """Accepts connections, reads nothing, answers nothing. Yields (base URL, accepted)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    accepted = threading.Event()
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            accepted.set()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/v1", accepted
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        srv.close()


@contextmanager
def status_server(status: int, body: dict) -> Iterator[tuple[str, list[str]]]:
    """A tiny HTTP server answering every POST with ``status`` and a JSON body."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (http.server's name)
            seen.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1", seen
    finally:
        srv.shutdown()
        srv.server_close()


def engine(url: str, timeout_s: float = 30.0) -> OpenAIEngine:
    cfg = LLMConfig(engine="openai", base_url=url, request_timeout_s=timeout_s)
    return OpenAIEngine(cfg, "served-model")


def test_interactive_defaults() -> None:
    cfg = LLMConfig()
    assert cfg.request_timeout_s == 30.0
    assert cfg.max_retries == 0  # a dead server fails in one timeout, not (1 + retries) x


def test_silent_server_times_out_with_one_line_naming_the_url() -> None:
    with silent_server() as (url, accepted):
        with pytest.raises(LLMTimeout) as info:
            engine(url, timeout_s=1.0).generate([REQ, REQ])
        assert accepted.is_set()
    msg = str(info.value)
    assert isinstance(info.value, GenreError)
    assert "\n" not in msg and len(msg) < 300, msg
    assert f"engine 'openai' at {url}: no answer within 1 s" in msg


def test_silent_server_times_out_when_scoring_too() -> None:
    sreq = ScoreRequest(messages=(Message("user", "x"),), labels=("A", "B"))
    with silent_server() as (url, _):
        with pytest.raises(LLMTimeout, match="no answer within 0.5 s"):
            engine(url, timeout_s=0.5).score_labels([sreq])


def test_closed_port_is_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(LLMUnavailable) as info:
        engine(url).generate([REQ])
    msg = str(info.value)
    assert not isinstance(info.value, LLMTimeout)
    assert "\n" not in msg and len(msg) < 300, msg
    assert msg.startswith(f"engine 'openai' at {url}: cannot connect: connection refused")


def test_http_500_names_the_status_and_the_server_message() -> None:
    body = {"error": {"message": "EngineCore died\nsee log", "type": "InternalServerError"}}
    with status_server(500, body) as (url, seen):
        with pytest.raises(LLMUnavailable) as info:
            engine(url).generate([REQ])
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 300, msg
    assert msg == (
        f"engine 'openai' at {url}: HTTP 500 Internal Server Error: EngineCore died see log"
    )
    assert seen == ["/v1/chat/completions"]  # no retries by default


def test_cli_prints_one_error_line_for_a_failing_server(recommend_cmd: list[str]):
    cmd = recommend_cmd
    with status_server(500, {"error": {"message": "boom"}}) as (url, _):
        proc = subprocess.run(
            [*cmd, "--set", "llm.engine=openai", "--set", f"llm.base_url={url}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 2, proc.stderr[-2000:]
    # Progress lines ("loading LLM engine ...") come first; then the error, one line.
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1] == f"error: engine 'openai' at {url}: HTTP 500 Internal Server Error: boom"
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 1000, proc.stderr[-3000:]


SCRIPT = textwrap.dedent(
    """
    import faulthandler, signal, sys
    # A test that times out asks for every thread's stack (SIGUSR1) before it kills.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from genre_agent.config import LLMConfig
    from genre_agent.llm.base import GenRequest, Message
    from genre_agent.llm.engines import OpenAIEngine

    # Like genre_agent.cli.main: SIGTERM unwinds as SystemExit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = LLMConfig(engine="openai", base_url=sys.argv[1], request_timeout_s=300)
    req = GenRequest(messages=(Message("user", "hello"),), max_tokens=8)
    print("calling", flush=True)
    OpenAIEngine(cfg, "served-model").generate([req, req, req])
    """
)


# Far below the 300 s request timeout the call would otherwise wait for, and loose enough
# for a loaded machine: 2 s failed beside a real model loading, 20 s with the fast suite on
# both cores (pytest -n 2) and a real-model test beside it.
PROMPT_S = 60.0


def _interrupt_promptly(proc: subprocess.Popen, accepted: threading.Event, sig: int) -> int:
    try:
        assert accepted.wait(120), "the call never reached the server"
        time.sleep(1.0)
        proc.send_signal(sig)
        try:
            rc = proc.wait(timeout=PROMPT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # the script's faulthandler: every stack
            time.sleep(1.0)
            proc.kill()
            _, err = proc.communicate(timeout=10)
            status = Path(f"/proc/{os.getpid()}/status").read_text()
            masks = [ln for ln in status.splitlines() if ln.startswith(("SigBlk", "SigIgn"))]
            pytest.fail(
                f"still running {PROMPT_S} s after signal {sig}; this process {masks}; "
                f"its stderr: {(err or b'')[-3000:]!r}"
            )
        return rc if rc is not None else -1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_waiting_call_promptly(sig: int) -> None:
    with silent_server() as (url, accepted):
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        rc = _interrupt_promptly(proc, accepted, sig)
    assert rc == (143 if sig == signal.SIGTERM else -signal.SIGINT), rc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_signal_stops_a_waiting_recommend_promptly(sig: int, recommend_cmd: list[str]) -> None:
    cmd = recommend_cmd
    with silent_server() as (url, accepted):
        proc = subprocess.Popen(
            [*cmd, "--set", "llm.engine=openai", "--set", f"llm.base_url={url}"]
            + ["--set", "llm.request_timeout_s=300"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        rc = _interrupt_promptly(proc, accepted, sig)
    assert rc == (143 if sig == signal.SIGTERM else 130), rc
