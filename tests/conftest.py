"""Real servers for the tests: a Redis-protocol server, an Upstash REST gateway in front of it, and
PostgreSQL (started for a worker only when one of its tests uses it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from localservers.backends import BACKENDS, backend_fields
from localservers.gateway import UpstashGateway
from localservers.postgres_server import PostgresServer
from localservers.raw import ClusterRaw, PostgresRaw, RawAccess, RedisRaw, SQLiteRaw
from localservers.redis_cluster import RedisCluster
from localservers.redis_server import RedisServer
from memory import SessionStore, StoreConfig, open_store
from server.app import build_server
from server.settings import Settings

GATEWAY_TOKEN = "test-token-5f2b9c"

SettingsFactory = Callable[..., StoreConfig]
# A cluster node this long silent (a starved machine) is taken for dead, and its replica promoted.
STEADY_NODE_TIMEOUT_MS = 30_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A Redis Cluster of three primaries with a replica each, started when a test first needs it."""
    # Its nodes are never killed: a long node timeout, so that no failover happens by itself.
    cluster = RedisCluster(node_timeout_ms=STEADY_NODE_TIMEOUT_MS).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def gateway_server(redis_server: RedisServer) -> Iterator[UpstashGateway]:
    """The gateway shared by the whole session; tests that inject faults use `gateway` instead."""
    gateway = UpstashGateway(redis_port=redis_server.port, token=GATEWAY_TOKEN).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL per test worker, its layout created; tests isolate by key prefix."""
    server = PostgresServer().start()
    try:
        anyio.run(_prepare_layout, server.url)
        yield server
    finally:
        server.stop()


async def _prepare_layout(url: str) -> None:
    async with open_store(StoreConfig(database_url=url)) as store:
        await store.check()


@pytest.fixture
def gateway(gateway_server: UpstashGateway) -> Iterator[UpstashGateway]:
    """The shared gateway, up, with no fault pending and empty records, before and after the test."""
    gateway_server.restore()
    yield gateway_server
    gateway_server.restore()


@pytest.fixture
def key_prefix() -> str:
    """A prefix of its own for each test, so tests share the server without sharing keys."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def make_settings(
    redis_server: RedisServer,
    gateway: UpstashGateway,
    tmp_path: Path,
    key_prefix: str,
    request: pytest.FixtureRequest,
) -> SettingsFactory:
    """Settings selecting one backend, independent of the environment the tests run in."""

    def make(backend: str, **overrides: Any) -> StoreConfig:
        postgres = request.getfixturevalue("postgres_server") if backend == "postgres" else None
        fields = backend_fields(
            backend,
            redis=redis_server,
            gateway=gateway,
            sqlite_path=tmp_path / "sessions.sqlite3",
            cluster=request.getfixturevalue("redis_cluster") if backend == "cluster" else None,
            postgres=postgres,
        )
        return StoreConfig(**fields | {"key_prefix": key_prefix, "store_timeout_seconds": 5.0} | overrides)

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_config(backend: str, make_settings: SettingsFactory) -> StoreConfig:
    """The `store` fixture's configuration; a test module overrides it to change limits."""
    return make_settings(backend)


@pytest.fixture
async def store(store_config: StoreConfig) -> AsyncIterator[SessionStore]:
    async with open_store(store_config) as opened:
        yield opened


def server_settings(make_settings: SettingsFactory, backend: str, **overrides: Any) -> Settings:
    """The server's settings for `backend`, independent of the environment's store settings."""
    return Settings(**make_settings(backend, **overrides).model_dump())


@pytest.fixture
def settings(store_config: StoreConfig) -> Settings:
    """The server's settings over the `store` fixture's configuration."""
    return Settings(**store_config.model_dump())


@pytest.fixture
async def client(store: SessionStore, settings: Settings) -> AsyncIterator[Client]:
    """An MCP client connected in memory to the server over the `store` fixture."""
    async with Client(build_server(store, settings)) as connected:
        yield connected


@pytest.fixture
def raw(
    backend: str, redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[RawAccess]:
    """What the `store` fixture's backend holds, read and written directly."""
    access: RawAccess
    if backend == "sqlite":
        access = SQLiteRaw(tmp_path / "sessions.sqlite3")
    elif backend == "cluster":
        access = ClusterRaw(request.getfixturevalue("redis_cluster").ports[0])
    elif backend == "postgres":
        access = PostgresRaw(request.getfixturevalue("postgres_server").url)
    else:
        access = RedisRaw(redis_server.port)
    yield access
    access.close()


@pytest.fixture
def redis_raw(redis_server: RedisServer) -> Iterator[RedisRaw]:
    with RedisRaw(redis_server.port) as access:
        yield access


@pytest.fixture
def backend_settings(
    backend: str,
    tmp_path: Path,
    redis_server: RedisServer,
    gateway: UpstashGateway,
    key_prefix: str,
    request: pytest.FixtureRequest,
) -> dict[str, str]:
    """The environment that selects `backend` for the child process."""
    if backend == "sqlite":
        return {"SQLITE_PATH": str(tmp_path / "s.sqlite3")}
    if backend == "postgres":
        return {"DATABASE_URL": request.getfixturevalue("postgres_server").url, "KEY_PREFIX": key_prefix}
    if backend == "redis":
        return {"REDIS_URL": redis_server.url, "KEY_PREFIX": key_prefix}
    if backend == "cluster":
        return {"REDIS_URL": request.getfixturevalue("redis_cluster").url, "KEY_PREFIX": key_prefix}
    return {
        "UPSTASH_REDIS_REST_URL": gateway.url,
        "UPSTASH_REDIS_REST_TOKEN": GATEWAY_TOKEN,
        "KEY_PREFIX": key_prefix,
    }
