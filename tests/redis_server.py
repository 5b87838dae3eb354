"""A real Redis server for tests: `redis-server` (the Debian package, installed by .ci/system-deps.sh) on loopback.

Fixtures:

- `redis_server` (module scope): starts `redis-server` on a free 127.0.0.1 port in a temporary directory, with no
  persistence, waits (bounded) until it answers PING and yields its address `127.0.0.1:<port>` (a Feast Redis
  connection string); stops it after the module. Skips, saying why, when the binary is not installed.

Use it from a test module with `from tests.redis_server import redis_server  # noqa: F401`, or register the module
in `pytest_plugins` of tests/conftest.py.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 10.0
NOT_INSTALLED = "redis-server not installed: run .ci/system-deps.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int, timeout_s: float = 0.5) -> bool:
    """Whether a server on 127.0.0.1:port answers PING with +PONG (plain RESP, no client library)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(workdir: Path, binary: str | None = None) -> tuple[subprocess.Popen, int]:
    """Start redis-server in `workdir` on a free loopback port; returns (process, port) once it answers PING.

    Raises RuntimeError (with the server's log) when it exits or does not answer within START_TIMEOUT_S."""
    binary = binary or shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(NOT_INSTALLED)
    last_error = ""
    for _ in range(3):  # a free port can be taken between choosing and binding it: try another one
        port = _free_port()
        log = workdir / f"redis-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "yes"],
                cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _ping(port):
                return proc, port
            time.sleep(0.05)
        stop_redis(proc)
        last_error = log.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_S:.0f}s; its log:\n{last_error}")


def stop_redis(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Terminate the server (SIGTERM, then SIGKILL after `timeout_s`)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[str]:
    """A running redis-server on 127.0.0.1 (free port, no persistence); yields `127.0.0.1:<port>`."""
    binary = shutil.which("redis-server")
    if binary is None:
        print(NOT_INSTALLED)
        pytest.skip(NOT_INSTALLED)
    with tempfile.TemporaryDirectory(prefix="ebr-redis-") as tmp:
        proc, port = start_redis(Path(tmp), binary)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            stop_redis(proc)
