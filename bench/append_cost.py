"""What the append and the reads cost inside the store, against the floors they are judged by.

- Time inside Valkey per save (its SLOWLOG, every command logged): our script against a bare
  Lua GET + concatenate + SET of the same value, and a Redis list (RPUSH + EXPIRE, the layout
  LangChain's and LlamaIndex's chat histories use) for reference.
- Bytes a `get_session(last=20)` moves as the session grows, against a whole 20-turn session.
- One exchange saved with `save_turns` against two `save_turn` calls, on Upstash.
- SQLite: a save and a `last=20` read as the session grows.
- The identity rule under concurrency: equal text without a timestamp, and one retried turn.
"""

from __future__ import annotations

import functools
import statistics
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import redis.asyncio as aioredis

from bench.environment import BenchEnvironment
from bench.stats import median_ms, timed
from bench.workloads import _CONTENT, filler_turns
from localservers.raw import SQLiteRaw
from memory import ChatTurn, NewTurn, SessionStore, open_store, session_key
from memory.rules import encode_session, encode_turn

# The least any append of a JSON array can do inside the store: read it, add the turn, write it.
FLOOR_SCRIPT = """
local value = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], string.sub(value, 1, -2) .. ',' .. ARGV[1] .. ']', 'EX', ARGV[2])
"""
TTL = "604800"


@dataclass
class StoreTime:
    session_turns: int
    ours_us: float
    floor_us: float
    list_us: float

    @property
    def ratio(self) -> float:
        return self.ours_us / self.floor_us


@dataclass
class TailRead:
    session_turns: int
    round_trips: float
    billed_commands: float
    response_bytes: float
    whole_20_bytes: float
    median_ms: float


@dataclass
class ExchangeCost:
    approach: str
    round_trips: float
    billed_commands: float
    median_ms: float


@dataclass
class SQLiteCost:
    session_turns: int
    save_median_ms: float
    last_20_median_ms: float


@dataclass
class IdentityRun:
    backend: str
    case: str
    saves: int
    kept: int


def _new_turn(i: int) -> ChatTurn:
    return ChatTurn(role="user", content=f"new {i}: {_CONTENT}", timestamp=1_800_000_000_000 + i)


async def _slowlog_us(client: aioredis.Redis, command: bytes) -> list[int]:
    """Durations the SLOWLOG holds for `command`, in µs."""
    entries = await client.slowlog_get(16)
    return [int(entry["duration"]) for entry in entries if entry["command"].split()[0].upper() == command]


async def store_time(env: BenchEnvironment, lengths: tuple[int, ...], saves: int) -> list[StoreTime]:
    """Median time inside Valkey per save, from its SLOWLOG with every command logged."""
    client = aioredis.Redis(port=env.redis.port)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    ours = await open_store(env.settings("redis", key_prefix=prefix))
    floor_sha = await client.script_load(FLOOR_SCRIPT)
    await client.config_set("slowlog-log-slower-than", 0)
    await client.config_set("slowlog-max-len", 100_000)
    results = []
    try:
        await ours.save_turn("warm-up", NewTurn(role="user", content="caches the script"))
        for turns in lengths:
            value = encode_session(filler_turns(turns))
            ours_id, floor_key, list_key = f"ours-{turns}", f"{prefix}floor-{turns}", f"{prefix}list-{turns}"
            await client.set(session_key(prefix, ours_id), value)
            await client.set(floor_key, value)
            await client.delete(list_key)
            for start in range(0, turns, 1000):
                chunk = filler_turns(min(1000, turns - start), first_timestamp=start)
                await client.rpush(list_key, *(encode_turn(turn) for turn in chunk))

            # Interleaved, one of each per round, so that both see the same machine: a load
            # that comes and goes cannot favour one side.
            samples: dict[bytes, list[int]] = {b"OURS": [], b"FLOOR": [], b"RPUSH": [], b"EXPIRE": []}
            for i in range(saves):
                turn = _new_turn(i)
                await client.slowlog_reset()
                await ours.save_turn(ours_id, turn)
                samples[b"OURS"] += await _slowlog_us(client, b"EVALSHA")
                await client.slowlog_reset()
                await client.evalsha(floor_sha, 1, floor_key, encode_turn(turn), TTL)
                samples[b"FLOOR"] += await _slowlog_us(client, b"EVALSHA")
                await client.slowlog_reset()
                await client.rpush(list_key, encode_turn(turn))
                await client.expire(list_key, int(TTL))
                samples[b"RPUSH"] += await _slowlog_us(client, b"RPUSH")
                samples[b"EXPIRE"] += await _slowlog_us(client, b"EXPIRE")
            ours_us, floor_us, rpush_us, expire_us = (float(statistics.median(v)) for v in samples.values())
            list_us = rpush_us + expire_us
            results.append(StoreTime(turns, ours_us, floor_us, list_us))
    finally:
        await client.config_set("slowlog-log-slower-than", 10_000)
        await ours.aclose()
        await client.aclose()
    return results


async def _measure_call(
    env: BenchEnvironment, call: Callable[[], Awaitable[object]]
) -> tuple[int, int, int, float]:
    """(round trips, billed commands, response bytes, seconds) of one call through the gateway."""
    first = len(env.gateway.records)
    env.raw.reset_billing()
    seconds = await timed(call)
    records = env.gateway.records[first:]
    return len(records), env.raw.billed_commands(), sum(r.response_bytes for r in records), seconds


async def tail_reads(env: BenchEnvironment, lengths: tuple[int, ...], reads: int) -> list[TailRead]:
    """`get_session(last=20)` on Upstash as the session grows, against reading a 20-turn session whole."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    store = await open_store(env.settings("upstash", key_prefix=prefix))
    results = []
    try:
        env.raw.set(session_key(prefix, "twenty"), encode_session(filler_turns(20)))
        whole = [
            await _measure_call(env, functools.partial(store.get_session, "twenty")) for _ in range(reads)
        ]
        whole_bytes = statistics.mean(sample[2] for sample in whole)
        for turns in lengths:
            env.raw.set(session_key(prefix, f"s{turns}"), encode_session(filler_turns(turns)))
            read = functools.partial(store.get_session, f"s{turns}", 20)
            samples = [await _measure_call(env, read) for _ in range(reads)]
            results.append(
                TailRead(
                    session_turns=turns,
                    round_trips=statistics.mean(s[0] for s in samples),
                    billed_commands=statistics.mean(s[1] for s in samples),
                    response_bytes=statistics.mean(s[2] for s in samples),
                    whole_20_bytes=whole_bytes,
                    median_ms=median_ms([s[3] for s in samples]),
                )
            )
    finally:
        await store.aclose()
    return results


async def exchange_cost(env: BenchEnvironment, samples: int) -> list[ExchangeCost]:
    """One exchange (user + assistant) on Upstash: `save_turns` against two `save_turn` calls."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    store = await open_store(env.settings("upstash", key_prefix=prefix))
    env.raw.set(session_key(prefix, "exchange"), encode_session(filler_turns(100)))

    def exchange(i: int) -> tuple[NewTurn, NewTurn]:
        return (
            NewTurn(role="user", content=f"q{i}: {_CONTENT}", timestamp=1_800_000_000_000 + 2 * i),
            NewTurn(role="assistant", content=f"a{i}: {_CONTENT}", timestamp=1_800_000_000_001 + 2 * i),
        )

    async def as_batch(i: int) -> None:
        await store.save_turns("exchange", exchange(i))

    async def as_two_calls(i: int) -> None:
        question, answer = exchange(samples + i)
        await store.save_turn("exchange", question)
        await store.save_turn("exchange", answer)

    results = []
    try:
        await store.save_turn("warm-up", NewTurn(role="user", content="caches the script"))
        for approach, save in (("save_turns, one call", as_batch), ("save_turn, two calls", as_two_calls)):
            measured = [await _measure_call(env, functools.partial(save, i)) for i in range(samples)]
            results.append(
                ExchangeCost(
                    approach=approach,
                    round_trips=statistics.mean(m[0] for m in measured),
                    billed_commands=statistics.mean(m[1] for m in measured),
                    median_ms=median_ms([m[3] for m in measured]),
                )
            )
    finally:
        await store.aclose()
    return results


async def sqlite_costs(env: BenchEnvironment, lengths: tuple[int, ...], samples: int) -> list[SQLiteCost]:
    """A save and a `last=20` read on SQLite as the session grows."""
    settings = env.settings("sqlite")
    store = await open_store(settings)
    results = []
    try:
        for turns in lengths:
            SQLiteRaw(settings.sqlite_path).set(
                session_key("", f"s{turns}"), encode_session(filler_turns(turns))
            )
            saves = [
                await timed(functools.partial(store.save_turn, f"s{turns}", _new_turn(i)))
                for i in range(samples)
            ]
            reads = [
                await timed(functools.partial(store.get_session, f"s{turns}", 20)) for _ in range(samples)
            ]
            results.append(SQLiteCost(turns, median_ms(saves), median_ms(reads)))
    finally:
        await store.aclose()
    return results


async def identity_runs(env: BenchEnvironment, saves: int) -> list[IdentityRun]:
    """`saves` concurrent saves of one text: without a timestamp (all kept), and as one retried turn."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    results = []
    for backend in ("upstash", "redis", "sqlite"):
        store: SessionStore = await open_store(env.settings(backend, key_prefix=prefix))
        try:
            for case, timestamp in (
                ("same text, no timestamp", None),
                ("one turn retried", 1_800_000_000_000),
            ):
                session = f"{backend}-{timestamp}"
                turn = NewTurn(role="user", content="ok", timestamp=timestamp)
                async with anyio.create_task_group() as group:
                    for _ in range(saves):
                        group.start_soon(store.save_turn, session, turn)
                results.append(IdentityRun(backend, case, saves, len(await store.get_session(session))))
        finally:
            await store.aclose()
    return results
