"""Settings fields that select one backend served here, whatever the surrounding environment says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localservers.gateway import UpstashGateway
from localservers.redis_cluster import RedisCluster
from localservers.redis_server import RedisServer

# "cluster": the Redis backend on a Redis Cluster (three primaries, a replica each).
BACKENDS = ("sqlite", "redis", "upstash", "cluster")


def backend_fields(
    backend: str,
    *,
    redis: RedisServer,
    gateway: UpstashGateway,
    sqlite_path: Path,
    cluster: RedisCluster | None = None,
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
    elif backend == "cluster":
        if cluster is None:
            raise ValueError("the cluster backend needs a running cluster")
        fields["redis_url"] = cluster.url
    elif backend != "sqlite":
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return fields
