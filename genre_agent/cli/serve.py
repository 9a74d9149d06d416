"""``genre serve``: the HTTP API in one process or N worker processes on one port (moved
from genre_agent.cli.main, which registers it in its place among the commands)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from genre_agent.cli.common import ConfigOpt, SetOpt, announce, cli_config, safe_text
from genre_agent.config import Config

err = Console(stderr=True)


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default service.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to bind (default service.port, 8000).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes on the one port (each loads its own sources; share user "
            "data through store.database_url: docs/deploy.md).",
        ),
    ] = 1,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve the HTTP API (docs at /docs). A non-loopback address needs service.api_key."""
    import uvicorn

    from genre_agent.http import create_app
    from genre_agent.http.guards import check_bind
    from genre_agent.http.service import Service

    pairs = list(set_ or [])
    pairs += [f"service.host={json.dumps(host)}"] if host is not None else []
    pairs += [f"service.port={port}"] if port is not None else []
    cfg = cli_config(config, pairs)
    check_bind(cfg.service.host, cfg.service.api_key)
    if workers > 1:
        serve_workers(cfg, workers)
        return
    service = Service.from_config(cfg, announce=announce)
    err.print(safe_text("loading stores, sources and the LLM engine ...", "dim"))
    service.load()  # in the main thread, before the server accepts requests
    err.print(
        safe_text(
            f"ready in {service.load_seconds:.1f}s: {service.rec.store.count()} items; "
            f"serving http://{cfg.service.host}:{cfg.service.port} (docs at /docs)",
            "green",
        )
    )
    uvicorn.run(
        create_app(service=service),
        host=cfg.service.host,
        port=cfg.service.port,
        log_level="info",
    )


def serve_workers(cfg: Config, workers: int) -> None:
    """N uvicorn worker processes on one port, each building its app from the config."""
    import os

    import uvicorn

    from genre_agent.http.workers import FACTORY, worker_env

    if not cfg.store.database_url:
        err.print(
            safe_text(
                "note: without store.database_url the workers share SQLite files on this "
                "machine (fine for one machine; replicas elsewhere need PostgreSQL)",
                "yellow",
            )
        )
    os.environ.update(worker_env(cfg))
    err.print(
        safe_text(
            f"serving http://{cfg.service.host}:{cfg.service.port} with {workers} workers "
            "(each loads its stores and sources; /health/ready per worker)",
            "green",
        )
    )
    uvicorn.run(
        FACTORY,
        factory=True,
        workers=workers,
        host=cfg.service.host,
        port=cfg.service.port,
        log_level="info",
    )
