"""The Redis backend on a Redis Cluster beside the same backend on one Valkey node, in one run.

Its own servers: a cluster (three primaries with a replica each) and a single Valkey, both on
loopback, from the same binary. For each session size, a save (`save_turn` of one turn) and a
read (`get_session`) on each, and a save on the cluster with `REDIS_REPLICA_ACKS=1`:

- latency: the median and the 95th percentile of the call's wall time;
- round trips: the requests the client sends (each `send_packed_command` of redis-py is one:
  a pipeline's commands go in one, and the client waits for the replies before the next);
- Valkey time: the execution time of every command the call ran, from the SLOWLOG of every
  node that serves slots, with every command logged (as in bench/valkey_time.py).

Everything runs on one machine, so a cluster shows its overhead (the index's second command, a
replica to feed), never its scale-out.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from bench.data import TTL_SECONDS, filler_turns, new_turns, session_json
from localservers.redis_cluster import RedisCluster
from localservers.redis_server import RedisServer
from memory import SessionStore, StoreConfig, open_store, session_key

ONE_NODE = "one node"
CLUSTER = "cluster"
CLUSTER_ACKS = "cluster, REDIS_REPLICA_ACKS=1"
# Sessions are put back to their size this often, so that the saves measured do not grow them.
_RESET_EVERY = 10


@dataclass(frozen=True)
class ClusterPlan:
    lengths: tuple[int, ...]
    samples: int  # timed calls per figure
    counted: int  # calls whose round trips and Valkey time are counted


FULL = ClusterPlan(lengths=(10, 1000, 5000), samples=50, counted=5)
QUICK = ClusterPlan(lengths=(10, 1000), samples=5, counted=2)


@dataclass
class Figures:
    median_ms: float
    p95_ms: float
    round_trips: float
    valkey_us: float


@dataclass
class ClusterCost:
    store: str  # ONE_NODE, CLUSTER or CLUSTER_ACKS
    session_turns: int
    save: Figures
    read: Figures | None  # not measured with REDIS_REPLICA_ACKS=1: a read sends no WAIT


class _Trips:
    """Counts the requests every redis-py asyncio connection sends while `counting()` is open."""

    def __init__(self) -> None:
        self.sent = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        original = AbstractConnection.send_packed_command
        trips = self

        async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            trips.sent += 1
            await original(self, *args, **kwargs)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        try:
            yield
        finally:
            AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


@dataclass
class _Deployment:
    name: str
    store: SessionStore
    prefix: str
    put: Callable[[str, str], Awaitable[object]]  # key, value
    nodes: Callable[[], list[int]]  # the ports of the nodes that serve slots


async def _slowlog_us(ports: Sequence[int]) -> int:
    total = 0
    for port in ports:
        async with aioredis.Redis(port=port) as client:
            entries = await client.slowlog_get(-1)
            total += sum(
                int(e["duration"]) for e in entries if not e["command"].upper().startswith(b"SLOWLOG")
            )
    return total


async def _slowlog(ports: Sequence[int], *, on: bool) -> None:
    for port in ports:
        async with aioredis.Redis(port=port) as client:
            if on:
                await client.config_set("slowlog-log-slower-than", 0)
                await client.config_set("slowlog-max-len", 1024)
            else:
                await client.config_set("slowlog-log-slower-than", 10_000)
            await client.slowlog_reset()


async def _measure(
    deployment: _Deployment,
    op: Callable[[int], Awaitable[object]],
    reset: Callable[[], Awaitable[object]],
    plan: ClusterPlan,
) -> Figures:
    """`plan.samples` timed calls, then `plan.counted` calls with their trips and Valkey time."""
    timings: list[float] = []
    for i in range(plan.samples):
        if i % _RESET_EVERY == 0:
            await reset()
        started = time.perf_counter()
        await op(i)
        timings.append((time.perf_counter() - started) * 1000)
    ports = deployment.nodes()
    trips, valkey = _Trips(), []
    await reset()
    try:
        for i in range(plan.counted):
            await _slowlog(ports, on=True)
            with trips.counting():
                await op(plan.samples + i)
            valkey.append(await _slowlog_us(ports))
    finally:
        await _slowlog(ports, on=False)
    cut = statistics.quantiles(timings, n=20)[-1] if len(timings) > 1 else timings[0]
    return Figures(
        median_ms=statistics.median(timings),
        p95_ms=cut,
        round_trips=trips.sent / plan.counted,
        valkey_us=float(statistics.median(valkey)),
    )


async def _costs(deployment: _Deployment, plan: ClusterPlan, reads: bool) -> list[ClusterCost]:
    store, results = deployment.store, []
    await store.save_turn("warm-up", new_turns(0, 1)[0])
    await store.get_session("warm-up")
    for turns in plan.lengths:
        name = f"s-{turns}"
        key = session_key(deployment.prefix, name)
        value = session_json(filler_turns(turns))

        async def reset(key: str = key, value: str = value) -> None:
            await deployment.put(key, value)

        async def save(i: int, name: str = name) -> None:
            await store.save_turn(name, new_turns(i, 1)[0])

        async def read(i: int, name: str = name) -> None:
            await store.get_session(name)

        saved = await _measure(deployment, save, reset, plan)
        read_figures = await _measure(deployment, read, reset, plan) if reads else None
        results.append(ClusterCost(deployment.name, turns, saved, read_figures))
    return results


async def cluster_costs(quick: bool) -> list[ClusterCost]:
    """Every row of the section: one node, the cluster, the cluster with a replica's ack."""
    plan = QUICK if quick else FULL
    cluster, single = RedisCluster().start(), RedisServer().start()
    results: list[ClusterCost] = []
    try:
        async with (
            aioredis.RedisCluster(host="127.0.0.1", port=cluster.ports[0]) as cluster_client,
            aioredis.Redis(port=single.port) as single_client,
        ):

            async def put_cluster(key: str, value: str) -> None:
                await cluster_client.set(key, value, ex=TTL_SECONDS)

            async def put_single(key: str, value: str) -> None:
                await single_client.set(key, value, ex=TTL_SECONDS)

            for name, url, put, nodes, acks in (
                (ONE_NODE, single.url, put_single, lambda: [single.port], 0),
                (CLUSTER, cluster.url, put_cluster, cluster.primary_ports, 0),
                (CLUSTER_ACKS, cluster.url, put_cluster, cluster.primary_ports, 1),
            ):
                prefix = f"bench-{uuid.uuid4().hex[:8]}:"
                config = StoreConfig(
                    redis_url=url,
                    sqlite_path=Path(tempfile.gettempdir()) / "unused.sqlite3",  # never opened
                    key_prefix=prefix,
                    redis_replica_acks=acks,
                )
                async with open_store(config) as store:
                    deployment = _Deployment(name, store, prefix, put, nodes)
                    results += await _costs(deployment, plan, reads=not acks)
    finally:
        cluster.stop()
        single.stop()
    return results


def _figures(figures: Figures | None) -> list[str]:
    if figures is None:
        return ["—"] * 4
    return [
        f"{figures.median_ms:.2f}",
        f"{figures.p95_ms:.2f}",
        f"{figures.round_trips:g}",
        f"{figures.valkey_us:,.0f}",
    ]


def cluster_section(costs: Sequence[ClusterCost], number: int) -> list[str]:
    """The benchmark page's section on the cluster, numbered `number`."""
    if not costs:
        return []
    rows = [
        [f"{cost.session_turns:,}", cost.store, *_figures(cost.save), *_figures(cost.read)]
        for cost in sorted(
            costs, key=lambda c: (c.session_turns, [ONE_NODE, CLUSTER, CLUSTER_ACKS].index(c.store))
        )
    ]
    header = [
        "turns",
        "store",
        "save ms (median)",
        "save ms (p95)",
        "save round trips",
        "save Valkey µs",
        "read ms (median)",
        "read ms (p95)",
        "read round trips",
        "read Valkey µs",
    ]
    table = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    return [
        f"## {number}. A Redis Cluster beside one node",
        "",
        "The Redis backend on a cluster (`REDIS_URL=redis+cluster://…`, three primaries with a "
        "replica each) and on one Valkey, side by side in one run, and on the cluster with "
        "`REDIS_REPLICA_ACKS=1` (every save also sends `WAIT 1` in its round trip). A save is "
        "`save_turn` of one turn into a session of that many turns, a read `get_session` of it "
        "whole; the session index is on. Round trips are the requests the client sends; Valkey µs "
        "is the execution time of every command the call ran, summed over the primaries. On a "
        "cluster the index is a second command after the save's script (its keys lie in another "
        "slot), which costs a round trip. Every node runs on this one machine, so these rows show "
        "what a cluster costs, not what it gains: a cluster spreads sessions over machines, and "
        "here there is only one.",
        "",
        *table,
        "",
    ]
