"""uvicorn's h11 protocol with a deadline for the request head and no Nagle delay on replies.

uvicorn only times out idle keep-alive connections: a client that sends half a request line and stops
holds its connection (and a slot in the backlog) forever. Here every request's head must be complete within
`HEADER_TIMEOUT_S` of its first byte (or of the connection opening), or the connection is closed.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0  # a request head is a few hundred bytes; even a slow link sends it in well under this


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus a request-head deadline and TCP_NODELAY on every accepted connection."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small JSON replies would otherwise wait for the client's delayed ACK (~40 ms per keep-alive request).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._arm_head_timer()  # the first byte of the next request on a keep-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is complete; the body has its own limits

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE:  # still no complete request head
            self.transport.close()


def protocol_options() -> dict[str, Any]:
    """The uvicorn.Config keywords that select this protocol."""
    return {"http": GuardedH11Protocol}
