"""The FastAPI app: ``create_app(config)`` wires the service, guards, routes and metrics.

Status codes: bad input is 4xx naming the field (422 for values, 404 for an unknown user,
item or session, 413 for a body over service.max_body_bytes, 401 for a missing or wrong
key, 400 for a Host header outside service.allowed_hosts); a store or model that cannot
serve is 503. An LLM failure during a recommendation is never an error status: the answer
is flagged (http/budget.py). Every response has an X-Request-ID header.

/docs is Swagger UI from the swagger-ui-bundle package, served at /docs/static: it works
offline, and openapi.json describes every field (http/openapi.py). ``/`` is the web page
(http/web.py), which loads without the key and asks for it when the API needs one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from genre_agent.config import Config, load_config
from genre_agent.embedders import Embedder
from genre_agent.errors import CatalogError, GenreError
from genre_agent.http.errors import ALWAYS, WHY, genre_status
from genre_agent.http.experiments import build_experiments
from genre_agent.http.guards import BodyLimit, HostCheck, RequestIds, api_key_dependency
from genre_agent.http.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from genre_agent.http.openapi import describe_schema
from genre_agent.http.reads import build_reads
from genre_agent.http.routes import build_router
from genre_agent.http.schemas import ErrorOut, LiveOut, ReadyOut
from genre_agent.http.service import Service
from genre_agent.http.web import mount_page
from genre_agent.llm.base import LLM

DOCS_STATIC = "/docs/static"


def _field(loc: Any) -> str:
    """The field a validation error is about: its location without the leading kind (a
    body field may itself be named "query")."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def printable(value: Any) -> Any:
    """``value`` with every string made encodable (a lone surrogate shown as \\udfff), so
    an error that quotes the input can always be sent."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable(v) for v in value]
    return value


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
        docs_url=None,  # served below from the packaged Swagger UI, not a CDN
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
        return JSONResponse(printable(content), status_code=genre_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors)
        errors = [{k: v for k, v in e.items() if k not in ("url", "ctx")} for e in errors]
        body = {"detail": printable(jsonable_encoder(errors)), "message": printable(message)}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(UnicodeError)
    async def not_unicode(request: Request, exc: UnicodeError) -> JSONResponse:
        # A lone surrogate that got past validation (inside a free-form value): the client's
        # text, so a 4xx, never a 500.
        return JSONResponse(
            {"detail": "a field holds text that is not valid Unicode (a lone surrogate)"},
            status_code=422,
        )

    import swagger_ui_bundle

    app.mount(
        DOCS_STATIC, StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)), name="docs"
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI, every file from this server."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="GENRE API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
        )

    health_errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorOut, "description": WHY[400]}
    }
    metrics_errors: dict[int | str, dict[str, Any]] = {
        c: {"model": ErrorOut, "description": WHY[c]} for c in ALWAYS
    }

    @app.get("/health/live", tags=["health"], response_model=LiveOut, responses=health_errors)
    def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "live"}

    @app.get(
        "/health/ready",
        tags=["health"],
        response_model=None,
        responses={
            200: {"model": ReadyOut, "description": "Loaded and answering."},
            **health_errors,
            503: {"model": ErrorOut, "description": WHY[503]},
        },
    )
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

    @app.get("/metrics", dependencies=[auth], tags=["health"], responses=metrics_errors)
    def prometheus() -> Response:
        """Prometheus text: request latency per endpoint, LLM tokens, fallbacks by reason,
        and the feedback queue's lag."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    mount_page(app, api_key_set=cfg.service.api_key is not None)
    app.include_router(build_router(svc, metrics), dependencies=[auth])
    app.include_router(build_reads(svc), dependencies=[auth])
    app.include_router(build_experiments(svc), dependencies=[auth])
    app.openapi = lambda: describe_schema(app)  # type: ignore[method-assign]
    # add_middleware puts each one outside the ones before: the last added runs first.
    # Outermost: the request id, timing, the Host check; then the body limit.
    app.add_middleware(BodyLimit, max_bytes=cfg.service.max_body_bytes)
    app.add_middleware(HostCheck, allowed=cfg.service.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIds)
    return app
