"""uvicorn's httptools protocol with a header read timeout (uvicorn has none: a client that opens connections
and sends a request line and headers byte by byte, or nothing at all, would hold each one for ever).

A timer is armed when a connection is made and when a request's first byte is parsed, and cancelled when
its headers are complete; when it fires the connection is closed, after a `408 Request Timeout` (with
`Connection: close`) if part of a request had arrived. The body has its own timeout (`serving.middleware.
BodyLimit`) and an idle keep-alive connection uvicorn's keep-alive timeout.

On a graceful shutdown an idle keep-alive connection is not cut at once: it is given `DRAIN_GRACE_S` for a
request already on its way (sent just before the signal, not yet read), which is answered with
`Connection: close`; the connection closes when that answer is written, or when the grace passes.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

DRAIN_GRACE_S = 0.5
DEFAULT_HEADER_TIMEOUT_S = 10.0


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes a connection whose request headers are not complete within the config's
    `header_timeout_s` (set by `with_header_timeout`; DEFAULT_HEADER_TIMEOUT_S without it)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s: float = getattr(config, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_started = False  # bytes of the current request arrived (a 408 tells the client why)
        self._draining = False

    # ----------------------------------------------------------------------------------------------- timer

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request's headers are late while an answer is still being written: finish that
            # answer, then close (writing a 408 now would interleave with it)
            self.cycle.keep_alive = False
            return
        if self._request_started:
            msg = f"request headers not complete within {self.header_timeout_s:g} s"
            self.transport.write(b"".join([
                STATUS_LINE[408], b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(msg)).encode("ascii") + b"\r\n", b"connection: close\r\n\r\n",
                msg.encode("ascii"),
            ]))  # fmt: skip
        self.transport.close()

    # ------------------------------------------------------------------------------------ uvicorn's hooks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_started = True
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._request_started = False
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # a request that arrived during the drain: answered, then closed

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._draining and not self.pipeline and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful shutdown: close after the answer in progress, or after a short grace when idle."""
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        self._unset_keepalive_if_required()  # (a header timer still running keeps bounding a slow request)
        self.loop.call_later(DRAIN_GRACE_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.transport.is_closing():
            return
        if (self.cycle is None or self.cycle.response_complete) and not self._request_started:
            self.transport.close()  # (a request whose headers are still arriving has the header timer)


def with_header_timeout(config: uvicorn.Config, timeout_s: float) -> uvicorn.Config:
    """`config` (not loaded yet) serving with HeaderTimeoutProtocol and a header timeout of `timeout_s` seconds.
    The timeout is kept on the config, so it travels with it to uvicorn's worker processes."""
    if not 0 < timeout_s < math.inf:
        raise ValueError(f"header timeout must be > 0 seconds, got {timeout_s}")
    config.http = HeaderTimeoutProtocol
    config.header_timeout_s = float(timeout_s)  # type: ignore[attr-defined]
    return config
