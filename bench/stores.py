"""The stores side by side as a session grows: SQLite, Redis and PostgreSQL, each through the
memory layer, on servers on loopback. Per save and per read: latency, round trips (counted by a
proxy that adds no delay) and the time the server spent (Valkey's command statistics,
PostgreSQL's pg_stat_statements; SQLite runs in the process, so its time is the latency)."""

from __future__ import annotations

import functools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg

from bench.data import filler_turns, new_turns, session_json
from bench.environment import BenchEnvironment
from localservers.delay_proxy import delayed
from localservers.raw import PostgresRaw, RawAccess, RedisRaw, SQLiteRaw
from memory import SessionStore, open_store, session_key
from memory.postgres_store import PostgresStore
from server.settings import Settings

STORES = ("sqlite", "redis", "postgres")
# Saves and reads whose round trips are counted, per store and size.
_COUNTED = 3


@dataclass
class StoreCost:
    backend: str
    session_turns: int
    save_ms: float
    last_20_ms: float
    whole_ms: float
    save_round_trips: float  # 0 for SQLite: no network
    read_round_trips: float  # of a last=20 read
    server_us: float | None  # per save, inside the server; None for SQLite


async def _ms(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


def _raw(env: BenchEnvironment, backend: str, settings: Settings) -> RawAccess:
    if backend == "sqlite":
        return SQLiteRaw(settings.sqlite_path)
    if backend == "redis":
        return RedisRaw(env.redis.port)
    return PostgresRaw(env.postgres.url)


class _ServerClock:
    """Time the server spent on saves since the last reset, per save."""

    def __init__(self, env: BenchEnvironment, backend: str) -> None:
        self.env, self.backend = env, backend

    def reset(self) -> None:
        if self.backend == "redis":
            self.env.raw.reset_billing()
        elif self.backend == "postgres":
            with psycopg.connect(self.env.postgres.url, autocommit=True) as connection:
                connection.execute("SELECT pg_stat_statements_reset()")

    def per_save_us(self) -> float | None:
        if self.backend == "redis":
            stats = self.env.raw.client.info("commandstats")
            entry = stats.get("cmdstat_evalsha") or {}
            calls = int(entry.get("calls", 0))
            return float(entry.get("usec", 0)) / calls if calls else None
        if self.backend == "postgres":
            with psycopg.connect(self.env.postgres.url, autocommit=True) as connection:
                row = connection.execute(
                    "SELECT sum(total_exec_time), sum(calls) FROM pg_stat_statements WHERE query LIKE %s",
                    ("%session_memory.append_turns(%",),
                ).fetchone()
            if row is None or not row[1]:
                return None
            return float(row[0]) * 1000 / float(row[1])
        return None


async def store_costs(env: BenchEnvironment, lengths: tuple[int, ...], samples: int) -> list[StoreCost]:
    results = []
    for backend in STORES:
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        settings = env.settings(backend, key_prefix=prefix)
        raw = _raw(env, backend, settings)
        clock = _ServerClock(env, backend)
        store = await open_store(settings)
        try:
            await store.check()
            await store.save_turn("warm-up", new_turns(0, 1)[0])
            if isinstance(store, PostgresStore):
                await store.purge_finished()  # started by the first save; not part of what is timed
            for turns in lengths:
                name = f"grow-{turns}"
                raw.set(session_key(prefix, name), session_json(filler_turns(turns)))
                await store.get_session(name, 20)  # warm: connection, prepared statements
                clock.reset()
                saves = [
                    await _ms(functools.partial(store.save_turn, name, new_turns(i, 1)[0]))
                    for i in range(samples)
                ]
                server_us = clock.per_save_us()
                reads = [await _ms(functools.partial(store.get_session, name, 20)) for _ in range(samples)]
                wholes = [await _ms(functools.partial(store.get_session, name)) for _ in range(samples)]
                trips = await _round_trips(env, backend, prefix, name, samples)
                results.append(
                    StoreCost(
                        backend,
                        turns,
                        statistics.median(saves),
                        statistics.median(reads),
                        statistics.median(wholes),
                        *trips,
                        server_us,
                    )
                )
        finally:
            await store.aclose()
    return results


async def _round_trips(
    env: BenchEnvironment, backend: str, prefix: str, name: str, serial: int
) -> tuple[float, float]:
    """Round trips of a save and of a last=20 read, through a proxy that counts them."""
    if backend == "sqlite":
        return 0.0, 0.0
    if backend == "redis":
        port, field, url = env.redis.port, "redis_url", env.redis.url
    else:
        port, field, url = env.postgres.port, "database_url", env.postgres.url
    with delayed(port, 0.0) as proxy:
        proxied = {field: url.replace(f":{port}/", f":{proxy.port}/")}
        store: SessionStore = await open_store(env.settings(backend, key_prefix=prefix, **proxied))
        try:
            await store.save_turn(name, new_turns(serial + 999, 1)[0])
            if isinstance(store, PostgresStore):
                await store.purge_finished()  # the first save started one: its statements are not the save's
            for i in range(12):  # connected, past psycopg's threshold for prepared statements
                await store.get_session(name, 20)
                await store.save_turn(name, new_turns(serial + 1000 + i, 1)[0])
            before = proxy.round_trips
            for i in range(_COUNTED):
                await store.save_turn(name, new_turns(serial + 2000 + i, 1)[0])
            saved = proxy.round_trips
            for _ in range(_COUNTED):
                await store.get_session(name, 20)
            return (saved - before) / _COUNTED, (proxy.round_trips - saved) / _COUNTED
        finally:
            await store.aclose()
