"""Settings fields that select one backend served here, whatever the surrounding environment says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localservers.gateway import UpstashGateway
from localservers.redis_server import RedisServer

BACKENDS = ("sqlite", "redis", "upstash")


def backend_fields(
    backend: str, *, redis: RedisServer, gateway: UpstashGateway, sqlite_path: Path
) -> dict[str, Any]:
    """Keyword arguments for `memory.StoreConfig` or `server.settings.Settings` choosing `backend`.

    The other backends' fields are set to None explicitly: a variable in the environment the
    tests or benchmarks run in must not pick a different store.
    """
    fields: dict[str, Any] = {
        "upstash_redis_rest_url": None,
        "upstash_redis_rest_token": None,
        "redis_url": None,
        "sqlite_path": sqlite_path,
    }
    if backend == "upstash":
        fields |= {"upstash_redis_rest_url": gateway.url, "upstash_redis_rest_token": gateway.token}
    elif backend == "redis":
        fields["redis_url"] = redis.url
    elif backend != "sqlite":
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return fields
