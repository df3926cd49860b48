"""What the session index costs on Upstash: a save with it and without it, and a page of 20
sessions, at 10 and 10,000 indexed sessions: HTTP round trips, billed commands, Valkey time."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from bench.data import new_turns
from bench.environment import BenchEnvironment
from bench.valkey_time import billed_commands, slowlog_us
from memory import SessionStore, open_store
from memory.index import index_keys

SAVE_INDEXED = "save_turn, index on"
SAVE_UNINDEXED = "save_turn, index off"
LIST_PAGE = "list_sessions, 20 a page"
_SESSION_TURNS = 10


@dataclass
class IndexCost:
    operation: str
    indexed_sessions: int
    round_trips: float  # median HTTP requests to the Upstash gateway
    billed_commands: float  # median
    valkey_us: float  # median execution time inside Valkey


async def index_costs(env: BenchEnvironment, sizes: tuple[int, ...], samples: int) -> list[IndexCost]:
    direct = aioredis.Redis(port=env.redis.port)
    await direct.config_set("slowlog-log-slower-than", 0)
    await direct.config_set("slowlog-max-len", 1024)
    try:
        return [cost for size in sizes for cost in await _costs_at(env, direct, size, samples)]
    finally:
        await direct.config_set("slowlog-log-slower-than", 10_000)
        await direct.config_set("slowlog-max-len", 128)
        await direct.aclose()


async def _costs_at(
    env: BenchEnvironment, direct: aioredis.Redis, size: int, samples: int
) -> list[IndexCost]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    async with (
        open_store(env.settings("upstash", key_prefix=prefix)) as indexed,
        open_store(env.settings("upstash", key_prefix=prefix + "off:", session_index=False)) as unindexed,
    ):
        await _fill_index(direct, prefix, size)
        for store in (indexed, unindexed):  # a session of its own to save to; scripts cached
            await store.save_turns("s", new_turns(0, _SESSION_TURNS))
        await indexed.list_sessions(limit=20)
        operations: dict[str, Callable[[int], Awaitable[object]]] = {
            SAVE_INDEXED: lambda i: _save(indexed, i),
            SAVE_UNINDEXED: lambda i: _save(unindexed, i),
            LIST_PAGE: lambda i: indexed.list_sessions(limit=20),
        }
        results = []
        for name, operation in operations.items():
            trips, billed, us = [], [], []
            for i in range(samples):
                env.gateway.records.clear()
                await direct.config_resetstat()
                await direct.slowlog_reset()
                await operation(i)
                trips.append(len(env.gateway.records))
                billed.append(await billed_commands(direct))
                us.append(await slowlog_us(direct))
            medians = (statistics.median(trips), statistics.median(billed), statistics.median(us))
            results.append(IndexCost(name, size, *medians))
        return results


async def _save(store: SessionStore, serial: int) -> None:
    await store.save_turn("s", new_turns(1000 + serial, 1)[0])


async def _fill_index(client: aioredis.Redis, space: str, size: int) -> None:
    """`size` sessions in the index, saved over the last day (their keys need not exist to be
    listed: the index alone is read)."""
    index, titles = index_keys(space)
    now = int(time.time() * 1000)
    for start in range(0, size, 1000):
        batch = range(start, min(size, start + 1000))
        await client.zadd(index, {f"indexed-{i}": now - 86_400_000 + i for i in batch})
        await client.hset(titles, mapping={f"indexed-{i}": f"Conversation number {i}" for i in batch})
