"""One-machine stack on loopback: PostgreSQL, Redis, `chroma run`, a vLLM OpenAI server, two
`genre serve` replicas behind nginx, `genre consume` and `genre worker` (docs/deploy.md).

    scripts/stack.sh up [--no-llm] [--catalog F.jsonl] [--interactions F.csv] [--set k=v]
    scripts/stack.sh status
    scripts/stack.sh down

State (pids, ports, logs, data, the generated genre.toml) lives in ``--dir`` (default
``$STACK_DIR`` or ``.genre/stack``). Each part runs in its own process group; ``down`` stops
every group it started and checks that nothing is left. ``--no-llm`` (or ``STACK_LLM=none``)
skips vLLM: ``llm.base_url`` points at a closed port, so explanations answer with
``trace.fallback = "llm_unavailable"`` and the fast path is unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from stack_parts import PartFailed, State, down, free_port, launch, postgres_bin, status, toml_value

ROOT = Path(__file__).resolve().parents[1]
GENRE = [sys.executable, "-m", "genre_agent.cli"]
LLM_LOCK = os.environ.get("GENRE_LLM_LOCK", "/tmp/genre-llm.lock")
SERVED_NAME = "genre-default"


def genre_config(d: Path, ports: dict[str, int], sets: list[str]) -> dict[str, Any]:
    """The genre.toml every genre process of the stack reads."""
    cfg: dict[str, Any] = {
        "store": {
            "kind": "http",
            "host": "127.0.0.1",
            "port": ports["chroma"],
            "interactions_path": str(d / "data" / "interactions.sqlite"),
            "models_path": str(d / "data" / "models"),
            "database_url": f"postgresql://genre@127.0.0.1:{ports['postgres']}/postgres",
        },
        "profile": {"path": str(d / "data" / "profiles.sqlite")},
        "chat": {"sessions_path": str(d / "data" / "chat.sqlite")},
        "llm": {
            "engine": "openai",
            # --no-llm: a port nothing listens on; explanations fall back (llm_unavailable).
            "base_url": f"http://127.0.0.1:{ports['vllm']}/v1",
            "served_model_name": SERVED_NAME,
        },
        "service": {"cache_url": f"redis://127.0.0.1:{ports['redis']}/0"},
        "queue": {"redis_url": f"redis://127.0.0.1:{ports['redis']}/1"},
    }
    for pair in sets:
        key, _, value = pair.partition("=")
        *path, last = key.strip().split(".")
        node = cfg
        for part in path:
            node = node.setdefault(part, {})
        node[last] = toml_value(value.strip())
    return cfg


def nginx_conf(d: Path, port: int, replicas: list[int]) -> str:
    n = d / "nginx"
    temps = "".join(
        f"    {kind}_temp_path {n / 'tmp' / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    servers = "".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in replicas
    )
    return (
        f"daemon off;\nworker_processes 1;\npid {n / 'nginx.pid'};\n"
        f"error_log {d / 'logs' / 'nginx-error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n    access_log off;\n" + temps + "    upstream genre {\n" + servers + ""
        "        keepalive 32;\n    }\n    server {\n"
        f"        listen 127.0.0.1:{port};\n        client_max_body_size 16m;\n"
        "        location / {\n            proxy_pass http://genre;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header X-Forwarded-For $remote_addr;\n"
        # A replica that is down or restarting: the request goes to the other one. POSTs
        # here are reads, or writes idempotent by event id / item id, so they may be resent.
        "            proxy_next_upstream error timeout http_502 http_503 non_idempotent;\n"
        "            proxy_next_upstream_tries 2;\n"
        "            proxy_connect_timeout 2s;\n"
        "            proxy_read_timeout 600s;\n"
        # Server-sent events (chat streaming) pass through as they are written.
        "            proxy_buffering off;\n"
        "        }\n    }\n}\n"
    )


def sample_interactions(catalog: Path, out: Path) -> Path:
    """A small made-up interaction log over the catalog's ids, when none is given."""
    ids = [json.loads(line)["id"] for line in catalog.read_text().splitlines() if line.strip()]
    rows = [
        f"u{u},{ids[(u * 3 + j * 7) % len(ids)]},{1000 + u * 10 + j},{4 + (u + j) % 2}"
        for u in range(40)
        for j in range(6)
    ]
    out.write_text("user_id,item_id,timestamp,rating\n" + "\n".join(rows) + "\n")
    return out


def reachable_by_others(folder: Path) -> bool:
    """Whether every folder above ``folder`` lets other users through (the x bit)."""
    return all(p.stat().st_mode & 0o001 for p in [folder, *folder.parents] if p.exists())


def start_postgres(state: State, port: int, timeout: float) -> None:
    bindir = postgres_bin()
    if bindir is None:
        raise PartFailed("postgres is not installed (scripts/install-servers.sh installs it)")
    pg = state.dir / "postgres"
    # The server refuses to run as root: as root, it runs as the Debian package's user.
    user = "postgres" if os.geteuid() == 0 else None
    if user is not None and not pg.exists() and not reachable_by_others(state.dir):
        # That user cannot reach a folder under root's home or pytest's tmp_path: its data
        # goes to a folder of its own under /tmp, linked from the state folder.
        pg.symlink_to(tempfile.mkdtemp(prefix="genre-stack-pg-"))
    pg.mkdir(parents=True, exist_ok=True)
    pg = pg.resolve()
    data = pg / "data"
    if user is not None:
        shutil.chown(pg, user)
    if not (data / "PG_VERSION").exists():
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "genre", "--auth=trust"]
        done = subprocess.run(
            [*initdb, "-E", "UTF8"], capture_output=True, text=True, user=user, cwd=pg
        )
        if done.returncode != 0:
            raise PartFailed(f"postgres: initdb failed: {done.stderr[-2000:]}")
    cmd = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(pg)]
    cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    # SIGINT: postgres's fast shutdown (SIGTERM waits for every client to disconnect).
    kw: dict[str, Any] = {"user": user, "stop_signal": signal.SIGINT, "group": False}
    launch(state, "postgres", cmd, f"pg:{port}", port, timeout, **kw)


def start_servers(state: State, ports: dict[str, int], args: argparse.Namespace) -> None:
    d = state.dir
    start_postgres(state, ports["postgres"], args.timeout)
    redis = ["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1"]
    redis += ["--save", "", "--appendonly", "no", "--dir", str(d / "data")]
    launch(state, "redis", redis, f"redis:{ports['redis']}", ports["redis"], args.timeout)
    chroma = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(d / "chroma")]
    chroma += ["--host", "127.0.0.1", "--port", str(ports["chroma"])]
    heartbeat = f"http://127.0.0.1:{ports['chroma']}/api/v2/heartbeat"
    launch(state, "chroma", chroma, f"http:{heartbeat}", ports["chroma"], args.timeout)
    if args.no_llm:
        print(f"  vllm: skipped (--no-llm): llm.base_url points at closed port {ports['vllm']}")
        return
    from genre_agent.llm.models import prepare_model

    port = ports["vllm"]
    # flock -o: the server runs while flock holds the machine's LLM lock (PLATFORM.md).
    cmd = ["flock", "-o", LLM_LOCK, sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--model", str(prepare_model())]
    cmd += ["--served-model-name", SERVED_NAME, "--dtype", "bfloat16", "--max-model-len"]
    cmd += ["4096", "--enforce-eager", "--seed", "0"]
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}
    env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    health = f"http://127.0.0.1:{port}/health"
    launch(state, "vllm", cmd, f"http:{health}", port, args.vllm_timeout, env=env)


def load_data(state: State, cfg: Path, args: argparse.Namespace) -> None:
    inter = args.interactions or sample_interactions(
        args.catalog, state.dir / "data" / "interactions.csv"
    )
    log = state.dir / "logs" / "index.log"
    for step in (
        ["index", str(args.catalog), "--interactions", str(inter), "-c", str(cfg)],
        ["fit", "-c", str(cfg)],
    ):
        print(f"  genre {step[0]} ...", flush=True)
        with log.open("a") as fh:
            done = subprocess.run([*GENRE, *step], stdout=fh, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise PartFailed(f"genre {step[0]} failed ({done.returncode}); see {log}")


def start_genre(state: State, ports: dict[str, int], cfg: Path, timeout: float) -> None:
    replicas = [ports["serve-1"], ports["serve-2"]]
    for n, port in enumerate(replicas, 1):
        cmd = [*GENRE, "serve", "-c", str(cfg), "--port", str(port)]
        ready = f"http://127.0.0.1:{port}/health/ready"
        launch(state, f"serve-{n}", cmd, f"http:{ready}", port, timeout)
    conf = state.dir / "nginx" / "nginx.conf"
    (state.dir / "nginx" / "tmp").mkdir(parents=True, exist_ok=True)
    conf.write_text(nginx_conf(state.dir, ports["nginx"], replicas))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ready = f"http://127.0.0.1:{ports['nginx']}/health/ready"
    cmd = [nginx, "-p", str(state.dir / "nginx"), "-c", str(conf)]
    launch(state, "nginx", cmd, f"http:{ready}", ports["nginx"], timeout)
    launch(state, "consume", [*GENRE, "consume", "-c", str(cfg)], "pid", None, timeout)
    launch(state, "worker", [*GENRE, "worker", "-c", str(cfg)], "pid", None, timeout)


def up(state: State, args: argparse.Namespace) -> int:
    if state.parts():
        print(f"stack: already up ({state.dir}); `down` first", file=sys.stderr)
        return 1
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        print("stack: nginx is not installed (scripts/install-servers.sh)", file=sys.stderr)
        return 1
    names = ["postgres", "redis", "chroma", "vllm", "serve-1", "serve-2", "nginx"]
    ports = {name: free_port() for name in names}
    d = state.dir
    (d / "data").mkdir(parents=True, exist_ok=True)
    import tomli_w

    cfg = d / "genre.toml"
    cfg.write_text(tomli_w.dumps(genre_config(d, ports, args.sets)))
    base = f"http://127.0.0.1:{ports['nginx']}"
    replicas = " ".join(f"http://127.0.0.1:{ports[f'serve-{n}']}" for n in (1, 2))
    urls = {"url": base, "replicas": replicas, "config": str(cfg)}
    print(f"stack: up in {d}", flush=True)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGTERM (like Ctrl-C) while starting: stop what was started, as on a failure.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        start_servers(state, ports, args)
        load_data(state, cfg, args)
        start_genre(state, ports, cfg, args.timeout)
    except (PartFailed, OSError, KeyboardInterrupt) as exc:
        print(f"stack: {str(exc) or 'interrupted'}; stopping what was started", file=sys.stderr)
        down(state)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    data = state.load()
    data["urls"] = urls
    state.save(data)
    print(f"stack: ready at {base} (replicas {urls['replicas']}); config {cfg}")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("STACK_DIR", ".genre/stack")))
    no_llm = os.environ.get("STACK_LLM") == "none"
    ap.add_argument("--no-llm", action="store_true", default=no_llm, help="skip vLLM")
    ap.add_argument("--catalog", type=Path, default=ROOT / "tests/fixtures/catalog.jsonl")
    ap.add_argument("--interactions", type=Path, help="CSV user_id,item_id,timestamp[,rating]")
    ap.add_argument("--set", "-s", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for a part to answer")
    ap.add_argument("--vllm-timeout", type=float, default=1200, help="incl. waiting for the lock")
    args = ap.parse_args()
    args.catalog = args.catalog.resolve()
    state = State(args.dir.resolve())
    if args.action == "down":
        sys.exit(down(state))
    if args.action == "status":
        sys.exit(status(state))
    sys.exit(up(state, args))


if __name__ == "__main__":
    main()
