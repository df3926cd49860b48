"""The benchmark's delaying TCP proxy: bytes pass both ways unchanged, late, and it stops."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from localservers.delay_proxy import DelayProxy, delayed


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server that sends back whatever each connection sends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]

    def echo(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    listener.close()


def _connect(proxy: DelayProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port))


def _receive(sock: socket.socket, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        if not chunk:
            break
        received += chunk
    return bytes(received)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(16) == b""
    except ConnectionResetError:
        return True


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"ping")
            return sock.recv(4) == b""
    except OSError:
        return True


def test_bytes_pass_through_both_ways_unchanged(echo_port: int) -> None:
    payload = os.urandom(1_000_000)  # many reads of 64 KiB: their order must hold
    with (
        delayed(echo_port, rtt_seconds=0.002) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        echoed = _receive(sock, len(payload))
        sender.join()
    assert echoed == payload


def test_each_round_trip_takes_at_least_the_delay_both_ways(echo_port: int) -> None:
    with (
        delayed(echo_port, rtt_seconds=0.1) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        started = time.perf_counter()
        sock.sendall(b"hello")
        assert _receive(sock, 5) == b"hello"
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.1


def test_round_trips_are_counted_per_request_and_answer(echo_port: int) -> None:
    with (
        delayed(echo_port, rtt_seconds=0) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as sock,
    ):
        for message in (b"one", b"two", b"six"):
            sock.sendall(message)
            assert _receive(sock, 3) == message
        assert proxy.round_trips == 3


def test_stop_closes_the_listener_and_open_connections(echo_port: int) -> None:
    proxy = DelayProxy(echo_port).start()
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    with sock:
        sock.sendall(b"hi")
        assert _receive(sock, 2) == b"hi"
        proxy.stop()
        assert not proxy.is_running
        assert _closed(sock)
    assert _refused(proxy.port)
    proxy.stop()  # a second stop is harmless


def test_it_stops_by_itself_at_the_end_of_its_lifetime(echo_port: int) -> None:
    proxy = DelayProxy(echo_port, lifetime=0.2).start()
    proxy.wait_stopped()
    assert not proxy.is_running
    assert _refused(proxy.port)
    proxy.stop()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"one_way_delay": -0.001}, "one_way_delay must be 0 or more seconds"),
        ({"lifetime": 0}, "lifetime must be more than 0 seconds"),
    ],
)
def test_bad_settings_are_refused(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DelayProxy(6379, **arguments)  # type: ignore[arg-type]
