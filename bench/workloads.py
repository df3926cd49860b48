"""Benchmarks 1, 2 and 4: the cost of a save as the session grows, and lost turns under concurrency."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from upstash_redis.asyncio import Redis as UpstashRedis

from bench.baseline import baseline_get_session, baseline_save_turn
from bench.environment import GATEWAY_TOKEN, BenchEnvironment
from bench.stats import median_ms, p99_ms, timed
from localservers.raw import SQLiteRaw
from memory import ChatTurn, Role, SessionStore, open_store, session_key
from memory.rules import encode_session

OURS_UPSTASH = "ours, Upstash"
BASELINE_UPSTASH = "design note, Upstash"
OURS_SQLITE = "ours, SQLite"

# About 500 bytes of text per turn, with the quotes and newlines real messages have.
_CONTENT = ('The user said "hello" and asked about the weather.\n' * 10)[:490]


def filler_turns(count: int, first_timestamp: int = 1_732_540_000_000) -> list[ChatTurn]:
    roles: tuple[Role, Role] = ("user", "assistant")
    return [
        ChatTurn(role=roles[i % 2], content=f"{i}: {_CONTENT}", timestamp=first_timestamp + i)
        for i in range(count)
    ]


@dataclass
class SaveCost:
    approach: str
    session_turns: int
    round_trips: float
    request_bytes: float
    response_bytes: float
    billed_commands: float | None
    median_ms: float
    p99_ms: float


@dataclass
class LostTurns:
    approach: str
    writers: int
    sent: int
    stored: int


SaveFunction = Callable[[ChatTurn], Awaitable[object]]


async def _measure_saves(
    env: BenchEnvironment, approach: str, turns: int, save: SaveFunction, saves: int
) -> SaveCost:
    durations, trips, sent, received, billed = [], [], [], [], []
    over_http = approach != OURS_SQLITE
    for i in range(saves):
        turn = ChatTurn(role="user", content=f"new {i}: {_CONTENT}", timestamp=1_800_000_000_000 + i)
        first_record = len(env.gateway.records)
        env.raw.reset_billing()
        durations.append(await timed(functools.partial(save, turn)))
        records = env.gateway.records[first_record:]
        trips.append(len(records))
        sent.append(sum(r.request_bytes for r in records))
        received.append(sum(r.response_bytes for r in records))
        billed.append(env.raw.billed_commands())

    def mean(values: list[int]) -> float:
        return sum(values) / len(values)

    return SaveCost(
        approach=approach,
        session_turns=turns,
        round_trips=mean(trips) if over_http else 0,
        request_bytes=mean(sent) if over_http else 0,
        response_bytes=mean(received) if over_http else 0,
        billed_commands=mean(billed) if over_http else None,
        median_ms=median_ms(durations),
        p99_ms=p99_ms(durations),
    )


async def save_cost(env: BenchEnvironment, session_lengths: tuple[int, ...], saves: int) -> list[SaveCost]:
    """Per save, as the stored session grows: ours and the baseline through the gateway, ours on SQLite."""
    results: list[SaveCost] = []
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    ours = await open_store(env.settings("upstash", key_prefix=prefix))
    sqlite_settings = env.settings("sqlite", key_prefix=prefix)
    sqlite = await open_store(sqlite_settings)
    baseline = UpstashRedis(url=env.gateway.url, token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False)
    try:
        await ours.save_turn("warm-up", ChatTurn(role="user", content="caches the script", timestamp=1))
        for turns in session_lengths:
            value = encode_session(filler_turns(turns))
            ours_id, baseline_id, sqlite_id = (f"{name}-{turns}" for name in ("ours", "baseline", "sqlite"))
            env.raw.set(session_key(prefix, ours_id), value)
            env.raw.set(session_key(prefix, baseline_id), value)
            SQLiteRaw(sqlite_settings.sqlite_path).set(session_key(prefix, sqlite_id), value)
            baseline_key = session_key(prefix, baseline_id)
            plans: list[tuple[str, SaveFunction]] = [
                (OURS_UPSTASH, functools.partial(ours.save_turn, ours_id)),
                (BASELINE_UPSTASH, functools.partial(baseline_save_turn, baseline, baseline_key)),
                (OURS_SQLITE, functools.partial(sqlite.save_turn, sqlite_id)),
            ]
            for approach, save in plans:
                results.append(await _measure_saves(env, approach, turns, save, saves))
    finally:
        await ours.aclose()
        await sqlite.aclose()
        await baseline.close()
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
    }
    baseline = UpstashRedis(url=env.gateway.url, token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False)
    try:
        for writers in writer_counts:
            sent = writers * per_writer
            for approach, store in stores.items():
                session = f"race-{approach[-6:]}-{writers}"
                await _race(writers, per_writer, functools.partial(store.save_turn, session))
                results.append(LostTurns(approach, writers, sent, len(await store.get_session(session))))
            key = session_key(prefix, f"race-baseline-{writers}")
            await _race(writers, per_writer, functools.partial(baseline_save_turn, baseline, key))
            results.append(
                LostTurns(BASELINE_UPSTASH, writers, sent, len(await baseline_get_session(baseline, key)))
            )
    finally:
        for store in stores.values():
            await store.aclose()
        await baseline.close()
    return results
