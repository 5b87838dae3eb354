"""Slow and lying clients are cut off: a body shorter than its Content-Length, or one trickling in, is answered
408 within the body timeout and the connection is closed; request headers that do not complete within the
header timeout (slowloris) get the connection closed, after a 408 when part of a request arrived (real uvicorn
on loopback, raw sockets; every wait is bounded by a socket timeout)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.clients import LiveServer, wait_for


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


def _close_waits(socks: list[socket.socket], deadline: float) -> list[bytes | None]:
    """For each socket, what the server sent before closing it (None: still open at `deadline`)."""
    out: list[bytes | None] = []
    for sock in socks:
        got = b""
        try:
            while True:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        except TimeoutError:
            out.append(None)
            continue
        except ConnectionResetError:
            pass
        out.append(got)
    return out


SLOW_KINDS = ("silent", "partial request line", "headers stop", "headers trickle")


def _start(sock: socket.socket, kind: str) -> None:
    if kind == "partial request line":
        sock.sendall(b"GET /hea")
    elif kind == "headers stop":
        sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
    elif kind == "headers trickle":
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")


def test_200_slow_header_connections_are_closed_and_others_are_served(published_root: Path):
    """Slowloris: 200 connections that send nothing, part of a request line, part of the headers, or headers a
    byte at a time are all closed once the header timeout (0.5 s) passes, those that had begun a request after a
    408; a normal request on a fresh connection is answered meanwhile and afterwards, and the server's
    connection count falls back to what it was."""
    app = create_app(ServerSettings(bundles_dir=published_root), start=False)
    app.state.runtime.manager.reload()
    with LiveServer(app, header_timeout_s=0.5) as server:
        before = server.connections
        socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(200)]
        kinds = [SLOW_KINDS[i % len(SLOW_KINDS)] for i in range(len(socks))]
        try:
            for sock, kind in zip(socks, kinds, strict=True):
                _start(sock, kind)
            during = httpx.get(server.url + "/healthz", timeout=10)
            assert during.status_code == 200
            trickling = [s for s, k in zip(socks, kinds, strict=True) if k == "headers trickle"]
            for _ in range(40):  # one header byte per connection every 50 ms, 2 s at most (4x the timeout)
                alive = 0
                for sock in trickling:
                    try:
                        sock.sendall(b"X")
                        alive += 1
                    except OSError:  # closed by the server
                        pass
                if alive == 0:
                    break
                time.sleep(0.05)
            answers = _close_waits(socks, time.monotonic() + 20)
        finally:
            for sock in socks:
                sock.close()
        still_open = [k for a, k in zip(answers, kinds, strict=True) if a is None]
        assert not still_open, f"{len(still_open)} slow connections not closed: {sorted(set(still_open))}"
        for answer, kind in zip(answers, kinds, strict=True):
            assert answer is not None
            if kind == "silent":
                assert answer == b""
            elif answer:  # a trickling client may see the reset of its next byte rather than the 408
                assert answer.startswith(b"HTTP/1.1 408"), (kind, answer[:200])
                assert b"connection: close" in answer.lower()
                assert answer.endswith(b"request headers not complete within 0.5 s")
        assert sum(1 for a in answers if a and a.startswith(b"HTTP/1.1 408")) >= 100  # every partial line/header
        wait_for(lambda: server.connections <= before, timeout=20)
        body = b'{"query": "red dress", "k": 2}'
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            assert _read_all(sock).startswith(b"HTTP/1.1 200")


def test_slow_headers_of_a_second_request_on_a_keep_alive_connection_get_408(published_root: Path):
    app = create_app(ServerSettings(bundles_dir=published_root), start=False)
    with LiveServer(app, header_timeout_s=0.5) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):  # bounded by the socket timeout
            chunk = sock.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert answer.endswith(b"request headers not complete within 0.5 s")


def test_a_header_timeout_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match=re.escape("header timeout (EBR_HEADER_TIMEOUT_S) must be > 0 seconds")):
        ServerSettings.resolve({"bundles_dir": "/b"}, {"EBR_HEADER_TIMEOUT_S": "0"})
    with pytest.raises(ValueError, match="EBR_HEADER_TIMEOUT_S='soon' is not a valid float"):
        ServerSettings.resolve({"bundles_dir": "/b"}, {"EBR_HEADER_TIMEOUT_S": "soon"})
