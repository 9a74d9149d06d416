"""The parts of scripts/stack.py: start one in its own process group and wait until it
answers, record it in the state folder, report it, stop it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- parts and their checks ----------------------------------------------------------------


@dataclass
class Part:
    name: str
    pid: int
    port: int | None
    log: str
    check: str  # "http:<url>", "redis:<port>", "pg:<port>" or "pid"
    stop_signal: int = signal.SIGTERM
    group: bool = True  # signal the whole process group (False: the leader only)


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def redis_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def pg_ok(port: int) -> bool:
    bindir = postgres_bin()
    if bindir is None:
        return False
    done = subprocess.run(
        [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "2"],
        capture_output=True,
    )
    return done.returncode == 0


def answers(part: Part) -> bool:
    kind, _, arg = part.check.partition(":")
    if not pid_alive(part.pid):
        return False
    if kind == "http":
        return http_ok(arg)
    if kind == "redis":
        return redis_ok(int(arg))
    if kind == "pg":
        return pg_ok(int(arg))
    return True


def postgres_bin() -> Path | None:
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return versions[-1].parent if versions else None


# --- the state folder ----------------------------------------------------------------------


class State:
    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.file = folder / "state.json"

    def load(self) -> dict[str, Any]:
        if not self.file.exists():
            return {"parts": [], "urls": {}}
        return dict(json.loads(self.file.read_text()))

    def parts(self) -> list[Part]:
        return [Part(**p) for p in self.load()["parts"]]

    def add(self, part: Part) -> None:
        data = self.load()
        data["parts"].append(asdict(part))
        self.save(data)

    def save(self, data: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.file)


class PartFailed(RuntimeError):
    pass


def launch(
    state: State,
    name: str,
    cmd: list[str],
    check: str,
    port: int | None,
    timeout: float,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
    **kw: Any,
) -> Part:
    """Start ``cmd`` in its own session (its process group), record it, wait until it
    answers ``check``; on failure raise naming the part and its log."""
    log = state.dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            user=user,
            cwd=state.dir,
        )
    part = Part(name, proc.pid, port, str(log), check, **kw)
    state.add(part)
    print(f"  {name}: starting (pid {proc.pid}{f', port {port}' if port else ''})", flush=True)
    deadline = time.time() + timeout
    while not answers(part):
        if proc.poll() is not None:
            raise PartFailed(f"{name} exited with {proc.returncode}; see {log}")
        if time.time() > deadline:
            raise PartFailed(f"{name} did not answer in {timeout:.0f}s; see {log}")
        time.sleep(0.5)
    return part


# --- stopping ------------------------------------------------------------------------------


def _signal(part: Part, sig: int) -> None:
    try:
        if part.group:
            os.killpg(part.pid, sig)
        else:
            os.kill(part.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_members(pgids: set[int]) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in pgids:
            out.append(int(entry.name))
    return out


def stop_part(part: Part, timeout: float = 30) -> None:
    _signal(part, part.stop_signal)
    deadline = time.time() + timeout
    while time.time() < deadline and _group_members({part.pid}):
        time.sleep(0.2)
    if _group_members({part.pid}):
        print(f"  {part.name}: still running after {timeout:.0f}s, SIGKILL")
        os.killpg(part.pid, signal.SIGKILL)
        time.sleep(0.5)
    print(f"  {part.name}: stopped")


def down(state: State) -> int:
    parts = state.parts()
    if not parts:
        print(f"stack: nothing running ({state.dir})")
        return 0
    for part in reversed(parts):
        stop_part(part)
    left = _group_members({p.pid for p in parts})
    if left:
        print(f"stack: processes left running: {left}", file=sys.stderr)
        return 1
    data = state.load()
    state.save({"parts": [], "urls": {}, "last": data.get("urls", {})})
    print("stack: down, nothing left running")
    return 0


def status(state: State) -> int:
    data = state.load()
    parts = state.parts()
    if not parts:
        print(f"stack: not running ({state.dir})")
        return 3
    bad = 0
    print(f"{'part':<15} {'pid':>8} {'port':>6}  state")
    for part in parts:
        alive, ok = pid_alive(part.pid), answers(part)
        bad += not ok
        word = "answers" if ok else ("running, not answering" if alive else "not running")
        word = "running" if ok and part.check == "pid" else word
        print(f"{part.name:<15} {part.pid:>8} {part.port or '-':>6}  {word}   {part.log}")
    for key, url in data.get("urls", {}).items():
        print(f"{key}: {url}")
    return 1 if bad else 0


def toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
