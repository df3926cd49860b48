"""Real servers for the tests: a Redis-protocol server and an Upstash REST gateway in front of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory import SessionStore, StoreConfig, open_store
from tests.support.gateway import UpstashGateway
from tests.support.raw import RawAccess, RedisRaw, SQLiteRaw
from tests.support.redis_server import RedisServer

GATEWAY_TOKEN = "test-token-5f2b9c"
BACKENDS = ["sqlite", "redis", "upstash"]

SettingsFactory = Callable[..., StoreConfig]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _gateway_process(redis_server: RedisServer) -> Iterator[UpstashGateway]:
    gateway = UpstashGateway(redis_port=redis_server.port, token=GATEWAY_TOKEN).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def gateway(_gateway_process: UpstashGateway) -> Iterator[UpstashGateway]:
    """The shared gateway, up, with no fault pending and empty records."""
    _gateway_process.reset()
    if _gateway_process._thread is None:
        _gateway_process.start()
    yield _gateway_process
    _gateway_process.reset()
    _gateway_process.wait_idle()
    if _gateway_process._thread is None:
        _gateway_process.start()


@pytest.fixture
def key_prefix() -> str:
    """A prefix of its own for each test, so tests share the server without sharing keys."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def make_settings(
    redis_server: RedisServer, gateway: UpstashGateway, tmp_path: Path, key_prefix: str
) -> SettingsFactory:
    """Settings selecting one backend, independent of the environment the tests run in."""

    def make(backend: str, **overrides: Any) -> StoreConfig:
        fields: dict[str, Any] = {
            "upstash_redis_rest_url": None,
            "upstash_redis_rest_token": None,
            "redis_url": None,
            "sqlite_path": tmp_path / "sessions.sqlite3",
            "key_prefix": key_prefix,
            "store_timeout_seconds": 5.0,
        }
        if backend == "upstash":
            fields |= {"upstash_redis_rest_url": gateway.url, "upstash_redis_rest_token": GATEWAY_TOKEN}
        elif backend == "redis":
            fields["redis_url"] = redis_server.url
        fields |= overrides
        return StoreConfig(**fields)

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def store(backend: str, make_settings: SettingsFactory) -> AsyncIterator[SessionStore]:
    opened = await open_store(make_settings(backend))
    yield opened
    await opened.aclose()


@pytest.fixture
def raw(backend: str, redis_server: RedisServer, tmp_path: Path) -> RawAccess:
    """What the `store` fixture's backend holds, read and written directly."""
    if backend == "sqlite":
        return SQLiteRaw(tmp_path / "sessions.sqlite3")
    return RedisRaw(redis_server.port)


@pytest.fixture
def redis_raw(redis_server: RedisServer) -> RedisRaw:
    return RedisRaw(redis_server.port)
