"""The gateway with random faults: each kind does to a request what the campaign counts on."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from localservers.chaos import Chaos, ChaosGateway
from localservers.redis_server import RedisServer

TOKEN = "chaos-token-01"


@pytest.fixture
def chaos() -> Chaos:
    return Chaos({}, seed=1)


@pytest.fixture
def gateway(redis_server: RedisServer, chaos: Chaos) -> Iterator[ChaosGateway]:
    started = ChaosGateway(redis_server.port, TOKEN, chaos=chaos, deadline=0.2)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def set_through(gateway: ChaosGateway, key: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.post(
        gateway.url, json=["SET", key, "1"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout
    )


def only(chaos: Chaos, kind: str) -> None:
    chaos.weights = {kind: 1.0}
    chaos.enabled = True


def settle(gateway: ChaosGateway) -> None:
    deadline = time.monotonic() + 10
    while gateway.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)


def test_without_faults_requests_run(gateway: ChaosGateway, direct: redis.Redis, key_prefix: str) -> None:
    assert set_through(gateway, f"{key_prefix}k").json() == {"result": "OK"}
    assert direct.get(f"{key_prefix}k") == b"1"


@pytest.mark.parametrize(("kind", "status"), [("html_500", 500), ("json_503", 503)])
def test_error_answers_do_not_run_the_request(
    gateway: ChaosGateway, chaos: Chaos, direct: redis.Redis, key_prefix: str, kind: str, status: int
) -> None:
    only(chaos, kind)
    assert set_through(gateway, f"{key_prefix}k").status_code == status
    assert direct.get(f"{key_prefix}k") is None
    assert chaos.counts == {kind: 1}


def test_a_stall_outlasts_the_deadline_and_drops_the_request(
    gateway: ChaosGateway, chaos: Chaos, direct: redis.Redis, key_prefix: str
) -> None:
    only(chaos, "stall")
    with pytest.raises(httpx.TransportError):
        set_through(gateway, f"{key_prefix}k", timeout=30)
    settle(gateway)
    assert direct.get(f"{key_prefix}k") is None
    seconds = float(chaos.log[0][2].split()[0])
    assert 0.4 <= seconds <= 1.2, "the deadline (0.2 s) plus 0.2 to 1 s"


def test_a_late_execution_runs_after_the_client_left(
    gateway: ChaosGateway, chaos: Chaos, direct: redis.Redis, key_prefix: str
) -> None:
    only(chaos, "execute_late")
    body = json.dumps(["SET", f"{key_prefix}k", "1"]).encode()
    head = f"POST / HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(head.encode() + body)
        deadline = time.monotonic() + 10
        while not gateway.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.in_flight == 1, "the gateway holds the request"
        assert direct.get(f"{key_prefix}k") is None, "not run yet"
    chaos.enabled = False
    settle(gateway)
    assert direct.get(f"{key_prefix}k") == b"1"
    assert chaos.counts == {"execute_late": 1}


def test_a_drop_after_execute_runs_the_request_and_loses_the_answer(
    gateway: ChaosGateway, chaos: Chaos, direct: redis.Redis, key_prefix: str
) -> None:
    only(chaos, "drop_after_execute")
    with pytest.raises(httpx.TransportError):
        set_through(gateway, f"{key_prefix}k")
    assert direct.get(f"{key_prefix}k") == b"1"
