"""The web page: ``/`` and its files (genre_agent/http/static), served without the API key.

The page is plain HTML, CSS and one vanilla JavaScript file, shipped inside the package (no
CDN, no build step). It calls the same /v1 endpoints as any client, so those still need
the key: ``/page.json`` tells the page whether to ask for one. Every page response carries
a Content-Security-Policy that allows this server's own files and nothing else (no inline
script, no other origin), so a catalog title that got rendered as HTML could still not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
API_KEY_HEADER = "X-API-Key"  # what guards.api_key_dependency reads

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class PageFiles(StaticFiles):
    """The page's static files, each with the page's security headers."""

    async def get_response(self, path: str, scope: Any) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount_page(app: FastAPI, api_key_set: bool) -> None:
    """Serve the page at ``/``, its files at ``/static``, and ``/page.json``."""
    app.mount("/static", PageFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The web page."""
        return FileResponse(
            STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS
        )

    @app.get("/page.json", include_in_schema=False)
    def page_settings() -> dict[str, Any]:
        """What the page needs before its first API call: whether to ask for a key."""
        return {"api_key_required": api_key_set, "api_key_header": API_KEY_HEADER}
