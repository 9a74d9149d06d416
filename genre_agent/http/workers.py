"""`genre serve --workers N`: the app factory each uvicorn worker process calls.

The parent process resolves the config once and hands it to the workers through an
environment variable (uvicorn spawns them; they import this module and call
:func:`app_factory`). Each worker builds its own Service: its own engine client, Chroma
client and store connections, sharing the backend (PostgreSQL for user data, see
docs/deploy.md). The parent loads nothing.
"""

from __future__ import annotations

import os
from typing import Any

from genre_agent.config import Config
from genre_agent.errors import ConfigError

CONFIG_ENV = "GENRE_SERVE_CONFIG_JSON"
# Answers carry the worker's PID in this header (which worker served a request: tests and
# load-balancer debugging).
WORKER_HEADER = "X-Genre-Worker"
FACTORY = "genre_agent.http.workers:app_factory"


def worker_env(config: Config) -> dict[str, str]:
    """What the parent puts in the environment for its workers."""
    return {CONFIG_ENV: config.model_dump_json()}


def app_factory() -> Any:
    """Build one worker's app from the config the parent resolved."""
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from genre_agent.http.app import create_app
    from genre_agent.http.service import Service

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise ConfigError(
            f"{FACTORY} needs the config in ${CONFIG_ENV}; start it with `genre serve --workers N`"
        )
    cfg = Config.model_validate_json(raw)
    app = create_app(service=Service.from_config(cfg))
    pid = str(os.getpid()).encode()

    class WorkerHeader:
        def __init__(self, inner: ASGIApp) -> None:
            self.inner = inner

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.inner(scope, receive, send)
                return

            async def tagged(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers.append((WORKER_HEADER.lower().encode(), pid))
                    message = {**message, "headers": headers}
                await send(message)

            await self.inner(scope, receive, tagged)

    app.add_middleware(WorkerHeader)
    return app
