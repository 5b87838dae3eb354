"""SIGTERM drains: a real `python -m serving serve` process with requests in flight on keep-alive connections
answers every request it was sent before the signal, closes the connections and exits 0 (raw sockets on
loopback; every wait is bounded by a socket timeout or a deadline)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving.clients import wait_for

REPO = Path(__file__).resolve().parents[2]
CONNECTIONS = 20
REQUESTS_BEFORE = 3  # answered on each connection before the signal; one more is sent just before it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _search(i: int) -> bytes:
    body = json.dumps({"query": f"red dress {i}", "k": 50, "rerank": i % 2 == 0}).encode()
    return (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length off `sock` (`buf` keeps bytes read past it); raises
    ConnectionError when the connection ends before the response is complete."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} bytes of a response head")
        buf += chunk
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    del buf[: len(head) + 4]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {length} body bytes")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return status, headers, body


@pytest.mark.slow
def test_sigterm_answers_every_request_sent_before_it_and_exits_0(published_root, tmp_path):
    port = _free_port()
    env = {**os.environ, "EBR_WATCH_INTERVAL_S": "0.5", "EBR_MAX_QUEUE": "64",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "serve", "--bundles", str(published_root), "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    socks: list[socket.socket] = []
    try:
        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=180, interval=0.5)
        socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(CONNECTIONS)]
        bufs = [bytearray() for _ in socks]
        for r in range(REQUESTS_BEFORE):  # keep-alive: several requests per connection, answered in turn
            for i, sock in enumerate(socks):
                sock.sendall(_search(r * CONNECTIONS + i))
            for sock, buf in zip(socks, bufs, strict=True):
                status, headers, body = _read_response(sock, buf)
                assert status == 200 and len(json.loads(body)["items"]) == 50
                assert headers.get("connection", "").lower() != "close"
        for i, sock in enumerate(socks):  # one more each, fully sent just before the signal: in flight or queued
            sock.sendall(_search(1000 + i))
        proc.send_signal(signal.SIGTERM)
        last = []
        for sock, buf in zip(socks, bufs, strict=True):
            status, headers, body = _read_response(sock, buf)  # complete, not cut off by the shutdown
            last.append((status, len(json.loads(body)["items"])))
            sock.settimeout(30)
            assert sock.recv(1) == b"", "the server closes each connection once it has answered"
        assert last == [(200, 50)] * CONNECTIONS
        code = proc.wait(60)
    finally:
        for sock in socks:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    text = log_path.read_text()
    assert code == 0, text
    assert "Application shutdown complete" in text and "Traceback" not in text, text
