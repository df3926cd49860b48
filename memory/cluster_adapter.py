"""A Redis or Valkey Cluster through redis-py's cluster client: `redis+cluster://host:port`.

The client learns the slot map from the node in the URL, sends each command to the node that
serves its key's slot, and follows MOVED and ASK. Every command the store sends touches one
slot: a session's key and its deletion marker share one, and the session index's two keys
share another (they carry a hash tag on a cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from memory import errors
from memory.adapters import PROBE_SECONDS, RedisAdapter, find_cause, scan_page, unreachable
from memory.config import StoreConfig, redact_url
from memory.errors import (
    ConfigurationError,
    SessionMemoryError,
    StoreSettingsError,
    StoreUnavailableError,
    not_serving_every_slot,
)
from memory.redis_store import Argument, cluster_state

# How many times one command follows the cluster to a slot's new node before it gives up.
_REDIRECTS = 5


class RedisClusterAdapter(RedisAdapter):
    """redis-py's `RedisCluster`, with no retries of its own beyond following the slot map."""

    cluster = True

    def __init__(self, url: str, config: StoreConfig) -> None:
        self.location = redact_url(url)
        self.what = f"the Redis Cluster at {self.location}"
        parts = urlsplit(url)
        plain_scheme = parts.scheme.removesuffix("+cluster")
        self._tls_address = (
            (parts.hostname or "localhost", parts.port or 6379) if plain_scheme == "rediss" else None
        )
        timeout = config.store_timeout_seconds
        try:
            self._seed_url = urlunsplit(parts._replace(scheme=plain_scheme))
            self._cluster: RedisCluster = RedisCluster.from_url(
                self._seed_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except (ValueError, TypeError, redis_errors.RedisClusterException):
            raise ConfigurationError("REDIS_URL could not be used: check its query options") from None

    async def command(self, *args: Argument) -> object:
        return await self._cluster.execute_command(*args)

    async def aclose(self) -> None:
        await self._cluster.aclose()

    async def scan(self, cursor: str, pattern: str, count: int) -> tuple[str, list[str]]:
        """A page of one primary's keys: the cursor is `{primary}:{its cursor}`, "0" at the end."""
        await self._cluster.initialize()
        primaries = sorted(self._cluster.get_primaries(), key=lambda node: node.name)
        index, _, position = cursor.partition(":") if cursor != "0" else ("0", "", "0")
        which = int(index)
        if which >= len(primaries):  # a failover took a primary away meanwhile
            return "0", []
        reply = await self._cluster.execute_command(
            "SCAN", position or "0", "MATCH", pattern, "COUNT", count, target_nodes=primaries[which]
        )
        if isinstance(reply, (list, tuple)) and reply and isinstance(reply[0], dict):
            # redis-py names the node a cursor belongs to: {"host:port": cursor}.
            reply = (next(iter(reply[0].values()), 0), *reply[1:])
        following, keys = scan_page(reply)
        if following != "0":
            return f"{which}:{following}", keys
        return ("0" if which + 1 == len(primaries) else f"{which + 1}:0"), keys

    async def together(self, key: str, commands: Sequence[Sequence[Argument]]) -> list[object]:
        """Send `commands` on one connection to the node that serves `key`, in one round trip,
        so that a WAIT among them counts the writes of the ones before it; each reply, or the
        exception it raised. A MOVED or ASK for the first command sends them all again to the
        node it names."""
        await self._cluster.initialize()
        node = self._node_for(key)
        asking = False
        for _ in range(_REDIRECTS):
            batch = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
            if asking:
                batch.insert(0, PipelineCommand(-1, "ASKING"))
            try:
                await node.execute_pipeline(batch)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError):
                # As the client does after a command of its own: read the slot map again before
                # the next command, which a failover may have moved to a replica.
                self._cluster._request_refresh(last_failed_node_name=node.name)
                raise
            replies = [command.result for command in batch if command.position >= 0]
            first = replies[0]
            if isinstance(first, redis_errors.MovedError):
                await self._cluster.nodes_manager.move_slot(first)
                node, asking = self._node_for(key), False
            elif isinstance(first, redis_errors.AskError):
                node, asking = self._node_at(first.host, first.port), True
            else:
                return replies
        raise StoreUnavailableError(f"{self.what} kept moving the session's slot; try again later")

    def _node_for(self, key: str) -> ClusterNode:
        node: ClusterNode | None = self._cluster.get_node_from_key(key)
        if node is None:
            raise StoreUnavailableError(f"{self.what} has no node for the session's slot; try again later")
        return node

    def _node_at(self, host: str, port: int) -> ClusterNode:
        node: ClusterNode | None = self._cluster.get_node(host=host, port=port)
        if node is None:
            raise StoreUnavailableError(f"{self.what} named a node it does not list; try again later")
        return node

    async def diagnose(self) -> SessionMemoryError | None:
        found = await super().diagnose()
        if found is not None:
            return found
        # The cluster client fails before it can say why, when a node it was told of is gone;
        # the node in the URL, asked alone, says whether the cluster serves every slot.
        try:
            async with aioredis.Redis.from_url(
                self._seed_url, socket_timeout=PROBE_SECONDS, socket_connect_timeout=PROBE_SECONDS
            ) as seed:
                info = await seed.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        except (redis_errors.RedisError, OSError):
            return None
        state = cluster_state(info)
        if state in ("", "ok"):
            return None
        return not_serving_every_slot(self.what, state)

    def translate(self, exc: Exception) -> SessionMemoryError | None:
        # The cluster's own states first: redis-py raises them with its own words, not the
        # server's reply, and some (ClusterDownError) are ResponseErrors too.
        if isinstance(exc, (redis_errors.ClusterDownError, redis_errors.TryAgainError)):
            return errors.busy(self.what, type(exc).__name__.removesuffix("Error").upper())
        if isinstance(
            exc, (redis_errors.ClusterError, redis_errors.SlotNotCoveredError, redis_errors.AskError)
        ):
            return StoreUnavailableError(
                f"{self.what} is changing its slot map (a failover or a resharding); try again later"
            )
        if isinstance(exc, redis_errors.RedisClusterException):
            # The client wraps what stopped it from reading the slot map: the server's answer
            # tells a setting to fix from an outage.
            if find_cause(exc, redis_errors.AuthenticationError) or find_cause(
                exc, redis_errors.AuthorizationError
            ):
                return self._rejected()
            answer = find_cause(exc, redis_errors.ResponseError)
            if (answer is not None and _not_a_cluster(str(answer))) or _not_a_cluster(str(exc)):
                return StoreSettingsError(
                    f"the server at {self.location} is not a Redis Cluster (its cluster support is "
                    "disabled): use redis:// or rediss:// in REDIS_URL"
                )
            return unreachable(exc, f"a node of {self.what}", self.variable)
        return super().translate(exc)


def _not_a_cluster(reply: str) -> bool:
    text = reply.lower()
    return "cluster support disabled" in text or "cluster mode is not enabled" in text
