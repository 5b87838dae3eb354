"""A loopback stand-in for a Kubernetes API server, shared by the tests of the steps that call the API.

A live API server cannot run here: `serve(handler_class)` starts a threaded http.server on 127.0.0.1 whose
handler answers like the API server does for the resources a test needs, and `write_kubeconfig` points the real
`kubernetes` client at it through a kubeconfig file, so the client's kubeconfig loading, request building and
response parsing are the real ones. `StubHandler` has the plumbing: JSON and text replies, `Status` errors, the
request body.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


class StubHandler(BaseHTTPRequestHandler):
    """Base request handler: JSON/text replies, Kubernetes `Status` errors and the request body."""

    def send_json(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_text(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_status(self, code: int, reason: str, message: str) -> None:
        self.send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code})

    def read_json(self) -> object:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def log_message(self, *args):
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """Start a threaded server on a free loopback port (stop it with shutdown() and server_close())."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_kubeconfig(path: Path, server: ThreadingHTTPServer) -> Path:
    """A kubeconfig whose current context reaches `server` with a bearer token."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "pipeline", "user": {"token": "stub-token"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "pipeline"}}],
    }))
    return path
