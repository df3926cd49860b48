"""The fault proxy in front of a real Valkey: stalls run late, resets run or not, as drawn."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from localservers.chaos import Chaos
from localservers.fault_proxy import FaultProxy
from localservers.redis_server import RedisServer


@pytest.fixture
def chaos() -> Chaos:
    return Chaos({}, seed=1)


@pytest.fixture
def proxy(redis_server: RedisServer, chaos: Chaos) -> Iterator[FaultProxy]:
    # Stalls long enough that "not forwarded yet" is still true when a test looks, even on a
    # loaded machine.
    started = FaultProxy(redis_server.port, chaos, stall_seconds=(1.5, 1.5)).start()
    yield started
    started.stop()


def faulty(chaos: Chaos, kind: str) -> None:
    chaos.weights = {kind: 1.0}
    chaos.enabled = True


def client(proxy: FaultProxy, timeout: float = 5.0) -> redis.Redis:
    return redis.Redis(port=proxy.port, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))


def wait_for(check: redis.Redis, key: str) -> bytes | None:
    """The key's value once it appears (a late command), or None after 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        value = check.get(key)
        if value is not None:
            assert isinstance(value, bytes)
            return value
        time.sleep(0.02)
    return None


def test_without_faults_commands_and_answers_pass_through(proxy: FaultProxy, key_prefix: str) -> None:
    through = client(proxy)
    assert through.set(f"{key_prefix}k", "v")
    assert through.get(f"{key_prefix}k") == b"v"
    through.close()


def test_a_stalled_command_runs_late_after_its_client_gave_up(
    proxy: FaultProxy, chaos: Chaos, redis_server: RedisServer, key_prefix: str
) -> None:
    direct = redis.Redis(port=redis_server.port)
    impatient = client(proxy, timeout=0.1)
    impatient.ping()
    faulty(chaos, "stall")
    with pytest.raises(redis.TimeoutError):
        impatient.set(f"{key_prefix}late", "1")
    impatient.close()
    assert direct.get(f"{key_prefix}late") is None, "held, not yet forwarded"
    assert wait_for(direct, f"{key_prefix}late") == b"1"
    assert chaos.counts["stall"] == 1
    direct.close()


def test_a_reset_before_forwarding_never_runs_the_command(
    proxy: FaultProxy, chaos: Chaos, redis_server: RedisServer, key_prefix: str
) -> None:
    through = client(proxy)
    through.ping()
    faulty(chaos, "reset_before")
    with pytest.raises(redis.ConnectionError):
        through.set(f"{key_prefix}never", "1")
    chaos.enabled = False
    through.close()
    time.sleep(0.3)  # a command that was forwarded would have run by now
    with redis.Redis(port=redis_server.port) as direct:
        assert direct.get(f"{key_prefix}never") is None
    assert chaos.counts["reset_before"] == 1


def test_a_reset_after_forwarding_runs_the_command_and_loses_its_answer(
    proxy: FaultProxy, chaos: Chaos, redis_server: RedisServer, key_prefix: str
) -> None:
    through = client(proxy)
    through.ping()
    faulty(chaos, "reset_after")
    with pytest.raises(redis.ConnectionError):
        through.set(f"{key_prefix}ran", "1")
    through.close()
    with redis.Redis(port=redis_server.port) as direct:
        assert wait_for(direct, f"{key_prefix}ran") == b"1"
    assert chaos.counts["reset_after"] == 1


def test_draws_repeat_with_the_same_seed_and_stop_when_disabled() -> None:
    weights = {"stall": 0.2, "reset_before": 0.1}
    first, second = Chaos(weights, seed=7), Chaos(weights, seed=7)
    assert first.draw() is None, "off until enabled"
    first.enabled = second.enabled = True
    draws = [first.draw() for _ in range(200)]
    assert draws == [second.draw() for _ in range(200)]
    assert set(draws) == {None, "stall", "reset_before"}


def test_probabilities_adding_up_past_one_are_refused() -> None:
    with pytest.raises(ValueError, match="add up to at most 1"):
        Chaos({"stall": 0.7, "reset_after": 0.6}, seed=1)
