"""Request guards: the Host header, the API key, the body size limit; and request ids."""

from __future__ import annotations

import hmac
import ipaddress
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from genre_agent.errors import ConfigError

_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="service.api_key")
_BEARER = HTTPBearer(auto_error=False, description="service.api_key as a bearer token")
_KEY_HEADER = Security(_HEADER)
_KEY_BEARER = Security(_BEARER)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to serve a non-loopback address without an API key."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"service.host = {host!r} is not a loopback address and service.api_key is not "
            "set: refusing to serve without a key (set service.api_key, e.g. "
            "GENRE__SERVICE__API_KEY=..., or bind 127.0.0.1)"
        )


def api_key_dependency(key: str | None) -> Callable[..., Awaitable[None]]:
    """A dependency that admits requests carrying ``key`` (any request when it is None)."""

    async def check(
        x_api_key: str | None = _KEY_HEADER,
        bearer: HTTPAuthorizationCredentials | None = _KEY_BEARER,
    ) -> None:
        if key is None:
            return
        given = x_api_key if x_api_key is not None else (bearer.credentials if bearer else None)
        if given is None or not hmac.compare_digest(given.encode(), key.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API key: send X-API-Key or Authorization: Bearer",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before any endpoint runs.

    A declared Content-Length is checked at once; a chunked body is buffered up to the limit
    and replayed to the app.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps(
            {
                "detail": f"request body is {size} bytes; the limit is service.max_body_bytes "
                f"= {self.max_bytes}"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                n = -1
            if n > self.max_bytes:
                await self._refuse(send, str(n))
                return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                await self._refuse(send, f"at least {total}")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _json_answer(status: int, detail: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps({"detail": detail}).encode()  # ASCII: any header bytes are escaped
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, body


def host_name(raw: str) -> str:
    """The host of a Host header value, lower case, without its port."""
    raw = raw.strip().lower()
    if raw.startswith("["):  # [::1]:8000
        return raw[: raw.find("]") + 1] if "]" in raw else raw
    return raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw


class HostCheck:
    """ASGI middleware: a request whose Host header is not in ``allowed`` (any port) gets
    400 before anything else runs. With the loopback default, a web page that rebinds its
    own name to 127.0.0.1 (DNS rebinding) cannot reach the service: its requests carry
    that name. ``"*"`` in ``allowed`` turns the check off."""

    def __init__(self, app: Any, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if host_name(raw) in self.allowed:
            await self.app(scope, receive, send)
            return
        start, body = _json_answer(
            400,
            f"Host header {raw[:100]!r} is not one of service.allowed_hosts "
            f"{sorted(self.allowed)}: add the name clients use to reach this service",
        )
        await send(start)
        await send({"type": "http.response.body", "body": body})


class RequestIds:
    """ASGI middleware: every request gets an id (``request.state.request_id``), sent back
    in the X-Request-ID header of every response; recommendation and list bodies carry it
    too, and feedback events may name it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_id)
