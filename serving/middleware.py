"""ASGI middleware: the request-body size limit (checked before any parsing) and per-route request metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROUTES = ("/search", "/events", "/healthz", "/readyz", "/metrics", "/admin/reload", "/openapi.json", "/docs")


async def send_json(send: Send, status: int, body: dict[str, Any], close: bool = False) -> None:
    """A complete JSON response (with `close`, `Connection: close`: the server drops the connection after it)."""
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """Answers 413 for a body over `max_bytes` (by Content-Length, or while streaming) and 408 (closing the
    connection) for a body not complete within `timeout_s` (a slow client, or a Content-Length larger than what
    is sent); buffers the others."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        too_big = {"error": f"body: larger than the limit of {self.max_bytes} bytes",
                   "errors": [{"field": "body", "message": f"larger than the limit of {self.max_bytes} bytes"}]}
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(send, 400, {"error": "body: Content-Length is not a number",
                                                "errors": [{"field": "body", "message": "bad Content-Length"}]})
                    return
                if declared > self.max_bytes:
                    await send_json(send, 413, too_big)
                    return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await send_json(send, 413, too_big)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            msg = f"not complete within {self.timeout_s:g} s ({size} bytes received)"
            await send_json(send, 408, {"error": f"body: {msg}", "errors": [{"field": "body", "message": msg}]},
                            close=True)
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestMetrics:
    """Counts requests and errors by route and status code and times them per route."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        status = 500
        t0 = time.perf_counter()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            m = self.metrics
            m.request_seconds.labels(route).observe(time.perf_counter() - t0)
            m.requests.labels(route, str(status)).inc()
            if status >= 400:
                m.errors.labels(route, str(status)).inc()
