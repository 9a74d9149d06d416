"""Start real servers on 127.0.0.1 for tests: `chroma run`, vLLM's OpenAI server and
`redis-server`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} not up after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def serve(
    cmd: list[str], health: str, log: Path, timeout: float, env: dict | None = None
) -> Iterator[None]:
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            _wait(health, proc, timeout, log)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def chroma_cmd(path: Path, port: int) -> list[str]:
    exe = Path(sys.executable).parent / "chroma"
    return [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def chroma_server(workdir: Path, timeout: float = 90) -> Iterator[int]:
    """`chroma run` on a free port with its data and log under ``workdir``; yields the port."""
    port = free_port()
    with serve(
        chroma_cmd(workdir / "srv", port),
        f"http://127.0.0.1:{port}/api/v2/heartbeat",
        workdir / "chroma.log",
        timeout=timeout,
    ):
        yield port


def vllm_cmd(model: str, port: int, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        model,
        "--served-model-name",
        name,
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "4096",
        "--enforce-eager",
        "--seed",
        "0",
    ]


def redis_cmd(workdir: Path, port: int) -> list[str]:
    """`redis-server` on loopback, keeping nothing on disk (its files stay in ``workdir``)."""
    exe = shutil.which("redis-server") or "redis-server"
    return [
        exe,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
    ]


@contextmanager
def redis_server(workdir: Path, timeout: float = 30) -> Iterator[int]:
    """`redis-server` on a free port, logging to ``workdir/redis.log``; yields the port and
    stops the server by its PID."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(redis_cmd(workdir, port), stdout=fh, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                    )
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.time() > deadline:
                    raise TimeoutError(f"redis-server not up after {timeout}s")
                time.sleep(0.1)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def postgres_bin() -> Path | None:
    """The folder of Debian's `postgres`/`initdb` (not on PATH), or None when not installed."""
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return versions[-1].parent if versions else None


@contextmanager
def postgres_server(timeout: float = 60) -> Iterator[str]:
    """A throwaway `postgres` on a free 127.0.0.1 port, with a temporary data directory;
    yields its ``postgresql://`` URL and stops the server by its PID. The server refuses
    to run as root: as root, it runs as the ``postgres`` user the Debian package made."""
    import tempfile

    bindir = postgres_bin()
    if bindir is None:
        raise FileNotFoundError("postgres is not installed (scripts/install-servers.sh)")
    as_user: str | None = None
    if os.geteuid() == 0:
        as_user = "postgres"
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="genre-pg-"))
    data = workdir / "data"
    data.mkdir()
    if as_user is not None:
        shutil.chown(workdir, as_user)
        shutil.chown(data, as_user)
    log = workdir / "postgres.log"
    try:
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "genre", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            user=as_user,
            cwd=workdir,
        )
        with log.open("w") as fh:
            if as_user is not None:
                shutil.chown(log, as_user)
            proc = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(workdir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                user=as_user,
                cwd=workdir,
            )
            try:
                deadline = time.time() + timeout
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"postgres exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                        )
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=1):
                            pass
                        if "ready to accept connections" in log.read_text():
                            break
                    except OSError:
                        pass
                    if time.time() > deadline:
                        raise TimeoutError(f"postgres not up after {timeout}s")
                    time.sleep(0.2)
                yield f"postgresql://genre@127.0.0.1:{port}/postgres"
            finally:
                # SIGINT: postgres's "fast" shutdown (SIGTERM would wait for every client,
                # such as a pooled connection of the test process, to disconnect).
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
