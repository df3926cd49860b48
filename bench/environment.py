"""The servers a benchmark run uses: a real Valkey and the Upstash REST gateway in front of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.settings import Settings
from tests.support.gateway import UpstashGateway
from tests.support.raw import RedisRaw
from tests.support.redis_server import RedisServer

GATEWAY_TOKEN = "bench-token-7d41a2e9"  # a local benchmark fixture, not a secret


@dataclass
class BenchEnvironment:
    redis: RedisServer
    gateway: UpstashGateway
    raw: RedisRaw
    workdir: Path

    def settings(self, backend: str, **overrides: Any) -> Settings:
        fields: dict[str, Any] = {
            "upstash_redis_rest_url": None,
            "upstash_redis_rest_token": None,
            "redis_url": None,
            "sqlite_path": self.workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite3",
            "max_session_bytes": 64 * 1024 * 1024,
            "store_timeout_seconds": 60.0,
        }
        if backend == "upstash":
            fields |= {"upstash_redis_rest_url": self.gateway.url, "upstash_redis_rest_token": GATEWAY_TOKEN}
        elif backend == "redis":
            fields["redis_url"] = self.redis.url
        return Settings(**(fields | overrides))

    def upstash_env(self) -> dict[str, str]:
        return {
            "UPSTASH_REDIS_REST_URL": self.gateway.url,
            "UPSTASH_REDIS_REST_TOKEN": GATEWAY_TOKEN,
            "MAX_SESSION_BYTES": str(64 * 1024 * 1024),
        }


@contextmanager
def bench_environment(workdir: Path) -> Iterator[BenchEnvironment]:
    redis = RedisServer().start()
    gateway = UpstashGateway(redis_port=redis.port, token=GATEWAY_TOKEN).start()
    try:
        yield BenchEnvironment(redis, gateway, RedisRaw(redis.port), workdir)
    finally:
        gateway.stop()
        redis.stop()
