"""What guards every request before a route sees it: the body's size, the API key, and the metrics of what was
answered. Pure ASGI, so that streamed answers (events, video, the preview) pass through untouched."""

from __future__ import annotations

import hmac
import json
import time
from typing import Callable

from frcnn.serve.errors import ServiceError
from frcnn.serve.metrics import Metrics


async def send_error(send: Callable, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a body larger than the route allows: at once from its Content-Length, or as soon as a streamed
    body passes the limit (the route then fails reading it)."""

    def __init__(self, app, limit_for: Callable[[str, str], int]):
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = f"the upload is larger than this server takes ({limit / 1024 / 1024:g} MB)"
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await send_error(send, 413, too_large)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ServiceError(413, too_large)
            return message

        await self.app(scope, counted, send)


class RequestMetrics:
    """Counts each answer by method, route (its template, not the path: ids would make endless series) and status,
    and times it from arrival to its last byte."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def watched(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or ("unmatched" if status == 404 else scope["path"][:40])
            self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)


def key_matches(headers, api_key: str) -> bool:
    """Whether a request carries the key, as `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    given = headers.get("x-api-key") or ""
    authorization = headers.get("authorization") or ""
    if authorization.lower().startswith("bearer "):
        given = authorization[len("bearer "):].strip()
    return bool(given) and hmac.compare_digest(given.encode(), api_key.encode())
