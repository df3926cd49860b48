"""HTTP connections that cannot pile up: a deadline for each request to arrive, a cap on their number.

uvicorn's h11 protocol waits forever for the first request on a connection, and for a body
that trickles in. Idle or slow clients could then hold every file descriptor, and the server
would stop accepting anyone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# From the connection's opening (or the previous response) to the request's last byte.
REQUEST_TIMEOUT_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024
# Descriptors kept for everything else: the listening socket, the store, logs, worker threads.
RESERVED_DESCRIPTORS = 64
MIN_CONNECTIONS = 16
# Where the descriptor limit is unknown (Windows has no RLIMIT_NOFILE) or unlimited.
UNBOUNDED_CONNECTIONS = 65_536

logger = logging.getLogger(__name__)


def connection_cap() -> int:
    """How many client connections fit under the process's descriptor limit."""
    try:
        import resource  # Unix only; Windows has no descriptor limit to read
    except ImportError:
        logger.info(
            "this platform has no descriptor limit to read (no 'resource' module): "
            "connections are capped at %d",
            UNBOUNDED_CONNECTIONS,
        )
        return UNBOUNDED_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return UNBOUNDED_CONNECTIONS
    return max(MIN_CONNECTIONS, soft - RESERVED_DESCRIPTORS)


class GuardedH11Protocol(H11Protocol):
    """h11 with a request deadline and, at the connection cap, the longest-waiting connection closed."""

    request_timeout: ClassVar[float] = REQUEST_TIMEOUT_SECONDS
    max_connections: ClassVar[int] = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_request()
        if len(self.connections) > self.max_connections:
            self._close_longest_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if not self.is_waiting():
            self._cancel_deadline()

    def on_response_complete(self) -> None:
        # Armed before the next request can start: the parent's handle_events disarms it if so.
        self._await_request()
        super().on_response_complete()

    def is_waiting(self) -> bool:
        """True until the whole request has arrived: before its first byte, or during headers or body."""
        return self.conn.their_state in (h11.IDLE, h11.SEND_BODY)

    def _await_request(self) -> None:
        self._cancel_deadline()
        self._waiting_since = self.loop.time()
        self._deadline = self.loop.call_later(self.request_timeout, self._close_if_waiting)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close_if_waiting(self) -> None:
        self._deadline = None
        if self.is_waiting() and not self.transport.is_closing():
            self.transport.close()

    def _close_longest_waiting(self) -> None:
        waiting = [
            connection
            for connection in self.connections
            if isinstance(connection, GuardedH11Protocol)
            and connection.is_waiting()
            and not connection.transport.is_closing()
        ]
        if waiting:
            min(waiting, key=lambda connection: connection._waiting_since).transport.close()


def guarded_protocol(
    max_connections: int, request_timeout: float = REQUEST_TIMEOUT_SECONDS
) -> type[H11Protocol]:
    """The protocol class for uvicorn's `http` option, with these limits."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"max_connections": max_connections, "request_timeout": request_timeout},
    )
