"""A whole read against the least any reader of the same value does: one GET and `json.loads`."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from upstash_redis.asyncio import Redis as UpstashRedis

from bench.approaches import redis_command, store_session, upstash_command
from bench.baseline import Command
from bench.environment import GATEWAY_TOKEN, BenchEnvironment
from memory import open_store, session_key


@dataclass
class ReadCost:
    backend: str
    session_turns: int
    whole_ms: float  # get_session(id)
    bare_ms: float  # GET + json.loads of the same value, same client library
    last_20_ms: float  # get_session(id, last=20)

    @property
    def ratio(self) -> float:
        return self.whole_ms / self.bare_ms


async def _ms(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def read_costs(
    env: BenchEnvironment, backend: str, lengths: tuple[int, ...], samples: int
) -> list[ReadCost]:
    """Ours and the bare read interleaved, one of each per round, on the same client library."""
    direct = aioredis.Redis(port=env.redis.port)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    store = await open_store(env.settings(backend, key_prefix=prefix))
    upstash = UpstashRedis(url=env.gateway.url, token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False)
    command: Command = redis_command(direct) if backend == "redis" else upstash_command(upstash)
    results = []
    try:
        for turns in lengths:
            name = f"read-{turns}"
            key = session_key(prefix, name)
            await store_session(direct, key, turns, as_list=False)

            async def bare(key: str = key) -> None:
                value = await command("GET", key)
                json.loads(value)  # type: ignore[arg-type]

            async def whole(name: str = name) -> None:
                await store.get_session(name)

            async def last_20(name: str = name) -> None:
                await store.get_session(name, 20)

            await whole()
            await bare()
            timings: dict[str, list[float]] = {"whole": [], "bare": [], "last": []}
            for _ in range(samples):
                timings["whole"].append(await _ms(whole))
                timings["bare"].append(await _ms(bare))
                timings["last"].append(await _ms(last_20))
            median = {k: statistics.median(v) for k, v in timings.items()}
            results.append(ReadCost(backend, turns, median["whole"], median["bare"], median["last"]))
    finally:
        await store.aclose()
        await upstash.close()
        await direct.aclose()
    return results
