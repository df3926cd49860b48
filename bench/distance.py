"""Save latency at a network distance: each client reaches its server through a delaying proxy.

The proxy adds half the round-trip time each way, in front of Valkey (the Redis backend,
redis-py) or of the Upstash REST gateway (the Upstash backend, the upstash-redis SDK). Ours,
the design note's GET + SET, and the LangChain and LlamaIndex lists each save one turn, then an
exchange (a question and its answer: `save_turns` for ours, two saves for the others).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from upstash_redis.asyncio import Redis as UpstashRedis

from bench.approaches import LIST_APPROACHES, redis_command, savers, store_session, upstash_command
from bench.baseline import Command
from bench.data import new_turns
from bench.environment import GATEWAY_TOKEN, BenchEnvironment
from localservers.delay_proxy import delayed
from memory import open_store, session_key

OPERATIONS = {"one turn": 1, "an exchange": 2}


@dataclass
class DistanceLatency:
    backend: str
    rtt_ms: float  # as set on the proxy
    measured_rtt_ms: float  # a PING through it, for reference
    session_turns: int
    approach: str
    operation: str
    median_ms: float


async def _timed_ms(command: Command, *args: str) -> float:
    started = time.perf_counter()
    await command(*args)
    return (time.perf_counter() - started) * 1000


async def distance_latency(
    env: BenchEnvironment, backend: str, rtts_ms: tuple[float, ...], lengths: tuple[int, ...], samples: int
) -> list[DistanceLatency]:
    direct = aioredis.Redis(port=env.redis.port)
    target = env.redis.port if backend == "redis" else env.gateway.port
    results = []
    try:
        for rtt in rtts_ms:
            prefix = f"bench-{uuid.uuid4().hex[:8]}:"
            with delayed(target, rtt / 1000) as proxy:
                url = f"127.0.0.1:{proxy.port}"
                if backend == "redis":
                    settings = env.settings("redis", key_prefix=prefix, redis_url=f"redis://{url}/0")
                    redis_client = aioredis.Redis(port=proxy.port)
                    command = redis_command(redis_client)
                    close: Callable[[], Awaitable[None]] = redis_client.aclose
                else:
                    settings = env.settings(
                        "upstash", key_prefix=prefix, upstash_redis_rest_url=f"http://{url}"
                    )
                    upstash = UpstashRedis(
                        url=f"http://{url}", token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False
                    )
                    command, close = upstash_command(upstash), upstash.close
                store = await open_store(settings)
                try:
                    await store.save_turn("warm-up", new_turns(0, 1)[0])
                    await command("PING")
                    ping = statistics.median([await _timed_ms(command, "PING") for _ in range(10)])
                    save = savers(store, command, prefix)
                    for turns in lengths:
                        timings: dict[tuple[str, str], list[float]] = {}
                        for i in range(samples):
                            for approach, saver in save.items():
                                name = f"{approach[:9]}-{turns}"
                                for operation, count in OPERATIONS.items():
                                    key = session_key(prefix, name)
                                    await store_session(direct, key, turns, approach in LIST_APPROACHES)
                                    started = time.perf_counter()
                                    await saver(name, new_turns(i, count))
                                    elapsed = (time.perf_counter() - started) * 1000
                                    timings.setdefault((approach, operation), []).append(elapsed)
                        for (approach, operation), values in timings.items():
                            results.append(
                                DistanceLatency(
                                    backend, rtt, ping, turns, approach, operation, statistics.median(values)
                                )
                            )
                finally:
                    await store.aclose()
                    await close()
    finally:
        await direct.aclose()
    return results
