"""Slow and lying clients are cut off: a body shorter than its Content-Length, or one trickling in, is answered
408 within the body timeout and the connection is closed (real uvicorn on loopback, raw sockets; every wait is
bounded by a socket timeout)."""

from __future__ import annotations

import socket
from pathlib import Path

from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.clients import LiveServer


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_a_content_length_lie_is_answered_408_and_closed(published_root: Path):
    app = create_app(ServerSettings(bundles_dir=published_root, body_timeout_s=0.5), start=False)
    app.state.runtime.manager.reload()
    with LiveServer(app) as server, socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"query": "x"')  # 13 of the 100 bytes promised
        answer = _read_all(sock)  # returns only because the server closes the connection
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in head.lower()
    assert b"not complete within 0.5 s (13 bytes received)" in body


def test_a_good_request_on_the_same_server_is_unaffected(published_root: Path):
    app = create_app(ServerSettings(bundles_dir=published_root, body_timeout_s=0.5), start=False)
    app.state.runtime.manager.reload()
    body = b'{"query": "red dress", "k": 2}'
    with LiveServer(app) as server, socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
