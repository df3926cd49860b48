"""The campaign's Valkey keeps acknowledged writes across SIGKILL and a restart, and can be paused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from localservers.durable_valkey import DurableValkey


@pytest.fixture
def valkey() -> Iterator[DurableValkey]:
    started = DurableValkey().start()
    yield started
    started.stop()


def test_an_acknowledged_write_survives_a_kill_and_restart(valkey: DurableValkey) -> None:
    client = redis.Redis(port=valkey.port)
    assert client.set("k", "kept")
    client.close()
    valkey.kill_and_restart()
    client = redis.Redis(port=valkey.port)
    assert client.get("k") == b"kept"
    client.close()


def test_a_paused_valkey_answers_nothing_until_resumed(valkey: DurableValkey) -> None:
    with redis.Redis(port=valkey.port, socket_timeout=0.3, retry=Retry(NoBackoff(), 0)) as impatient:
        impatient.ping()
        valkey.pause()
        with pytest.raises(redis.TimeoutError):
            impatient.ping()
    valkey.resume()
    with redis.Redis(port=valkey.port, socket_timeout=5) as client:
        assert client.ping()
