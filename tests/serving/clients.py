"""Ways to talk to the server in tests: the ASGI app in-process (httpx.ASGITransport on a private event loop)
and a real uvicorn server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from serving.http_protocol import with_header_timeout


class InProcessClient:
    """Synchronous calls into the ASGI app through httpx.ASGITransport (no sockets, no lifespan)."""

    def __init__(self, app: FastAPI) -> None:
        self._runner = asyncio.Runner()
        self._client = self._runner.run(self._make(app))

    @staticmethod
    async def _make(app: FastAPI) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://in-process")

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, path, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


class LiveServer:
    """uvicorn (uvloop, httptools with the server's header read timeout) serving `app` on a free loopback port,
    in a thread; runs the lifespan."""

    def __init__(self, app: FastAPI, header_timeout_s: float = 10.0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", access_log=False)
        with_header_timeout(config, header_timeout_s)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    @property
    def connections(self) -> int:
        """Connections the server holds open now."""
        return len(self._server.server_state.connections)

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `predicate()` until it returns a truthy value (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def metric_value(text: str, name: str) -> float:
    """One sample of a Prometheus exposition, e.g. 'x_total' (summed over labels) or 'x{a="1",b="2"}'; 0 if absent."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rpartition(" ")
        if key == name or ("{" not in name and key.startswith(name + "{")):
            total += float(value)
    return total
