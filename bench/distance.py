"""Save latency at a network distance: each client reaches its server through a delaying proxy.

The proxy adds half the round-trip time each way, in front of Valkey (the Redis backend,
redis-py) or of the Upstash REST gateway (the Upstash backend, the upstash-redis SDK). Ours,
the design note's GET + SET, and the LangChain and LlamaIndex lists each save one turn, then an
exchange (a question and its answer: `save_turns` for ours, two saves for the others).
"""

from __future__ import annotations

import contextlib
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
from localservers.delay_proxy import DelayProxy, delayed
from memory import SessionStore, open_store, session_key

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


@dataclass
class _Remote:
    """Clients that reach one backend through one delaying proxy."""

    rtt_ms: float
    prefix: str
    store: SessionStore
    command: Command
    close_command: Callable[[], Awaitable[None]]

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.close_command()


async def _remote(env: BenchEnvironment, backend: str, proxy: DelayProxy, rtt_ms: float) -> _Remote:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    url = f"127.0.0.1:{proxy.port}"
    if backend == "redis":
        settings = env.settings("redis", key_prefix=prefix, redis_url=f"redis://{url}/0")
        client = aioredis.Redis(port=proxy.port)
        command = redis_command(client)
        close: Callable[[], Awaitable[None]] = client.aclose
    else:
        settings = env.settings("upstash", key_prefix=prefix, upstash_redis_rest_url=f"http://{url}")
        upstash = UpstashRedis(
            url=f"http://{url}", token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False
        )
        command, close = upstash_command(upstash), upstash.close
    store = await open_store(settings)
    await store.save_turn("warm-up", new_turns(0, 1)[0])  # caches the script, opens the connection
    await command("PING")
    return _Remote(rtt_ms, prefix, store, command, close)


async def distance_latency(
    env: BenchEnvironment, backend: str, rtts_ms: tuple[float, ...], lengths: tuple[int, ...], samples: int
) -> list[DistanceLatency]:
    """Every distance at once, interleaved per round, so that a load that comes and goes hits all alike."""
    direct = aioredis.Redis(port=env.redis.port)
    target = env.redis.port if backend == "redis" else env.gateway.port
    results = []
    with contextlib.ExitStack() as proxies:
        remotes = [
            await _remote(env, backend, proxies.enter_context(delayed(target, rtt / 1000)), rtt)
            for rtt in rtts_ms
        ]
        try:
            pings = {
                r.rtt_ms: statistics.median([await _timed_ms(r.command, "PING") for _ in range(10)])
                for r in remotes
            }
            for turns in lengths:
                timings: dict[tuple[float, str, str], list[float]] = {}
                for i in range(samples):
                    for remote in remotes:
                        for approach, saver in savers(remote.store, remote.command, remote.prefix).items():
                            name = f"{approach[:9]}-{turns}"
                            key = session_key(remote.prefix, name)
                            for operation, count in OPERATIONS.items():
                                await store_session(direct, key, turns, approach in LIST_APPROACHES)
                                started = time.perf_counter()
                                await saver(name, new_turns(i, count))
                                elapsed = (time.perf_counter() - started) * 1000
                                timings.setdefault((remote.rtt_ms, approach, operation), []).append(elapsed)
                for (rtt, approach, operation), values in timings.items():
                    results.append(
                        DistanceLatency(
                            backend, rtt, pings[rtt], turns, approach, operation, statistics.median(values)
                        )
                    )
        finally:
            for remote in remotes:
                await remote.aclose()
            await direct.aclose()
    return results
