"""The FastAPI app: ``create_app(config)`` wires the service, guards, routes and metrics.

Status codes: bad input is 4xx naming the field (422 for values, 404 for an unknown user,
item or session, 413 for a body over service.max_body_bytes, 401 for a missing or wrong
key); a store or model that cannot serve is 503. An LLM failure during a recommendation
is never an error status: the answer is flagged (http/budget.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from genre_agent.config import Config, load_config
from genre_agent.embedders import Embedder
from genre_agent.errors import CatalogError, GenreError, ModelError, StoreError
from genre_agent.http.guards import BodyLimit, api_key_dependency
from genre_agent.http.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from genre_agent.http.routes import build_router
from genre_agent.http.service import Service
from genre_agent.llm.base import LLM
from genre_agent.service.fit import FitError


def _status(exc: GenreError) -> int:
    """503 when the service cannot serve (a store, a model, a missing fit), else 422."""
    return 503 if isinstance(exc, (StoreError, ModelError, FitError)) else 422


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def create_app(
    config: Config | None = None,
    *,
    service: Service | None = None,
    llm: LLM | None = None,
    embedder: Embedder | None = None,
) -> FastAPI:
    """The app for ``config`` (default: the loaded config). ``service`` (or ``llm`` /
    ``embedder``) inject prepared parts, as tests do. Stores, sources and the engine load
    at startup; /health/ready answers 200 once they have."""
    cfg = service.config if service is not None else (config or load_config())
    svc = service or Service.from_config(cfg, llm=llm, embedder=embedder)
    metrics = Metrics()
    if cfg.service.queue_metrics:
        metrics.watch_queue(cfg.queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.load()  # in the server's main thread: an in-process engine may need it
        metrics.ready.set(1)
        yield
        metrics.ready.set(0)
        svc.close()

    app = FastAPI(
        title="GENRE",
        summary="Recommendations with evidence-grounded LLM rationales.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = svc
    app.state.metrics = metrics
    auth = Depends(api_key_dependency(cfg.service.api_key))

    @app.exception_handler(GenreError)
    async def genre_error(request: Request, exc: GenreError) -> JSONResponse:
        content: dict[str, Any] = {"detail": str(exc)}
        if isinstance(exc, CatalogError):
            content["problems"] = [
                {"row": p.line, "field": p.field, "reason": p.reason, "value": p.value}
                for p in exc.problems
            ]
        return JSONResponse(content, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors)
        errors = [{k: v for k, v in e.items() if k != "url"} for e in errors]
        return JSONResponse(
            {"detail": jsonable_encoder(errors), "message": message}, status_code=422
        )

    @app.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"], response_model=None)
    def ready() -> Response | dict[str, Any]:
        """Stores, sources and the engine are loaded, and the store answers."""
        if not svc.ready:
            body = {"status": "loading", "error": svc.load_error}
            return JSONResponse(body, status_code=503)
        try:
            items = svc.rec.store.count()
        except Exception as exc:  # the store went away
            return JSONResponse(
                {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"}, 503
            )
        return {
            "status": "ready",
            "items": items,
            "engine": svc.rec.config.llm.engine,
            "load_seconds": round(svc.load_seconds, 3),
            # The fitted models this worker serves now (each reloads when `genre fit`
            # publishes a newer version): version and provenance.
            "models": svc.rec.sources.loaded_models(),
        }

    @app.get("/metrics", dependencies=[auth], tags=["health"])
    def prometheus() -> Response:
        """Prometheus text: request latency per endpoint, LLM tokens, fallbacks by reason,
        and the feedback queue's lag."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(build_router(svc, metrics), dependencies=[auth])
    # Outermost first: time everything, then refuse oversize bodies before parsing them.
    app.add_middleware(BodyLimit, max_bytes=cfg.service.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
