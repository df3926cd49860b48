"""What is kept from the earlier benchmarks: Upstash bytes per save, SQLite as the session
grows, and turns lost when writers race on one session (Upstash, SQLite, PostgreSQL)."""

from __future__ import annotations

import functools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from upstash_redis.asyncio import Redis as UpstashRedis

from bench.approaches import upstash_command
from bench.baseline import baseline_get_session, baseline_save_turn
from bench.data import filler_turns, new_turns, session_json
from bench.environment import GATEWAY_TOKEN, BenchEnvironment
from localservers.raw import SQLiteRaw
from memory import ChatTurn, SessionStore, open_store, session_key

OURS_UPSTASH = "ours, Upstash"
BASELINE_UPSTASH = "design note, Upstash"
OURS_SQLITE = "ours, SQLite"
OURS_POSTGRES = "ours, PostgreSQL"


@dataclass
class WireCost:
    approach: str
    session_turns: int
    round_trips: float
    request_bytes: float
    response_bytes: float
    billed_commands: float


@dataclass
class SQLiteCost:
    session_turns: int
    save_median_ms: float
    last_20_median_ms: float


@dataclass
class LostTurns:
    approach: str
    writers: int
    sent: int
    stored: int


SaveFunction = Callable[[ChatTurn], Awaitable[object]]


async def upstash_wire(env: BenchEnvironment, lengths: tuple[int, ...], saves: int) -> list[WireCost]:
    """Per save through the gateway: round trips and bytes (whole HTTP messages), billed commands."""
    results: list[WireCost] = []
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    ours = await open_store(env.settings("upstash", key_prefix=prefix))
    client = UpstashRedis(url=env.gateway.url, token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False)
    command = upstash_command(client)
    try:
        await ours.save_turn("warm-up", new_turns(0, 1)[0])
        for turns in lengths:
            value = session_json(filler_turns(turns))
            env.raw.set(session_key(prefix, f"ours-{turns}"), value)
            env.raw.set(session_key(prefix, f"note-{turns}"), value)
            plans: list[tuple[str, SaveFunction]] = [
                (OURS_UPSTASH, functools.partial(ours.save_turn, f"ours-{turns}")),
                (
                    BASELINE_UPSTASH,
                    functools.partial(baseline_save_turn, command, session_key(prefix, f"note-{turns}")),
                ),
            ]
            for approach, save in plans:
                trips, sent, received, billed = [], [], [], []
                for i in range(saves):
                    first = len(env.gateway.records)
                    env.raw.reset_billing()
                    await save(new_turns(i, 1)[0])
                    records = env.gateway.records[first:]
                    trips.append(len(records))
                    sent.append(sum(r.request_bytes for r in records))
                    received.append(sum(r.response_bytes for r in records))
                    billed.append(env.raw.billed_commands())
                results.append(
                    WireCost(
                        approach,
                        turns,
                        statistics.mean(trips),
                        statistics.mean(sent),
                        statistics.mean(received),
                        statistics.mean(billed),
                    )
                )
    finally:
        await ours.aclose()
        await client.close()
    return results


async def _ms(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def sqlite_costs(env: BenchEnvironment, lengths: tuple[int, ...], samples: int) -> list[SQLiteCost]:
    """A save and a `last=20` read on SQLite as the session grows."""
    settings = env.settings("sqlite")
    store = await open_store(settings)
    results = []
    try:
        for turns in lengths:
            SQLiteRaw(settings.sqlite_path).set(
                session_key("", f"s{turns}"), session_json(filler_turns(turns))
            )
            saves = [
                await _ms(functools.partial(store.save_turn, f"s{turns}", new_turns(i, 1)[0]))
                for i in range(samples)
            ]
            reads = [await _ms(functools.partial(store.get_session, f"s{turns}", 20)) for _ in range(samples)]
            results.append(SQLiteCost(turns, statistics.median(saves), statistics.median(reads)))
    finally:
        await store.aclose()
    return results


async def _race(writers: int, per_writer: int, save: SaveFunction) -> None:
    async def write(writer: int) -> None:
        for i in range(per_writer):
            await save(
                ChatTurn(role="user", content=f"writer {writer} turn {i}", timestamp=1_800_000_000_000 + i)
            )

    async with anyio.create_task_group() as group:
        for writer in range(writers):
            group.start_soon(write, writer)


async def lost_turns(
    env: BenchEnvironment, writer_counts: tuple[int, ...], per_writer: int
) -> list[LostTurns]:
    """N concurrent writers on one session: how many of the turns sent were stored."""
    results: list[LostTurns] = []
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    stores: dict[str, SessionStore] = {
        OURS_UPSTASH: await open_store(env.settings("upstash", key_prefix=prefix)),
        OURS_SQLITE: await open_store(env.settings("sqlite", key_prefix=prefix)),
        OURS_POSTGRES: await open_store(env.settings("postgres", key_prefix=prefix)),
    }
    client = UpstashRedis(url=env.gateway.url, token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False)
    command = upstash_command(client)
    try:
        for writers in writer_counts:
            sent = writers * per_writer
            for approach, store in stores.items():
                session = f"race-{approach[-6:]}-{writers}"
                await _race(writers, per_writer, functools.partial(store.save_turn, session))
                results.append(LostTurns(approach, writers, sent, len(await store.get_session(session))))
            key = session_key(prefix, f"race-baseline-{writers}")
            await _race(writers, per_writer, functools.partial(baseline_save_turn, command, key))
            stored = len(await baseline_get_session(command, key))
            results.append(LostTurns(BASELINE_UPSTASH, writers, sent, stored))
    finally:
        for store in stores.values():
            await store.aclose()
        await client.close()
    return results
