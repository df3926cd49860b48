"""Idle and slow clients cannot lock others out: header deadline, connection cap, quiet logs."""

from __future__ import annotations

import logging
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from server.log_limits import OncePerInterval
from tests.support.logged_server import logged_http_server
from tests.support.mcp_http import post_list_tools

SERVER_DESCRIPTORS = 1024
FLOOD = 1100


def limit_descriptors() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_DESCRIPTORS, hard))


@contextmanager
def descriptors_for_the_flood() -> Iterator[None]:
    """The test itself holds the flood's sockets open: it needs more than the server may have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = FLOOD + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"the hard descriptor limit ({hard}) is below {wanted}; the flood cannot be held open")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def half_open(port: int, index: int) -> socket.socket:
    """A connection that never completes a request: silent, or stuck halfway through its headers."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    if index % 2:
        connection.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
    return connection


def test_a_flood_of_half_open_connections_does_not_lock_a_good_client_out(tmp_path: Path) -> None:
    settings = {"SQLITE_PATH": str(tmp_path / "s.sqlite3")}
    flood: list[socket.socket] = []
    with (
        descriptors_for_the_flood(),
        logged_http_server(settings, tmp_path / "server.log", preexec_fn=limit_descriptors) as server,
    ):
        port = int(server.base_url.rsplit(":", 1)[1])
        try:
            started = time.monotonic()
            flood.extend(half_open(port, index) for index in range(FLOOD))
            served_at = None
            while served_at is None and time.monotonic() - started < 15:
                try:
                    if post_list_tools(server.base_url, None).status_code == 200:
                        served_at = time.monotonic()
                except httpx.TransportError:
                    time.sleep(0.1)
            assert served_at is not None, "the good client was not served within 15 s"
            assert served_at - started < 10, f"the good client waited {served_at - started:.1f} s"
            for _ in range(20):
                before = time.monotonic()
                assert post_list_tools(server.base_url, None).status_code == 200
                assert time.monotonic() - before < 1
        finally:
            for connection in flood:
                connection.close()
    log_lines = server.log().splitlines()
    assert len(log_lines) < 100, "\n".join(log_lines[:120])


def test_a_connection_that_sends_no_request_is_closed_after_the_header_deadline(tmp_path: Path) -> None:
    with logged_http_server({"SQLITE_PATH": str(tmp_path / "s.sqlite3")}, tmp_path / "server.log") as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            started = time.monotonic()
            assert idle.recv(1024) == b"", "the server answered a request it never completed"
            waited = time.monotonic() - started
        assert 8 < waited < 15, f"closed after {waited:.1f} s; the deadline is 10 s"


def test_repeated_messages_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.flood")
    limiter = OncePerInterval(interval=0.5)
    logger.addFilter(limiter)
    try:
        with caplog.at_level(logging.ERROR, logger="test.flood"):
            for _ in range(1000):
                logger.error("socket.accept() out of system resource\nsocket: <fd=%d>", 7)
            time.sleep(0.6)
            logger.error("socket.accept() out of system resource\nsocket: <fd=%d>", 8)
            logger.error("another problem")
    finally:
        logger.removeFilter(limiter)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert "(999 more like this in the last 0.5 s)" in messages[1]
    assert messages[2] == "another problem"
