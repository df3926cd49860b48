"""What a save costs when the session is full and drops its oldest turns, beside the same save into
a session of the same size that has room: Valkey time and billed commands, at the default limit."""

from __future__ import annotations

import statistics
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from bench.data import CONTENT, TTL_SECONDS, filler_turns
from bench.environment import BenchEnvironment
from bench.valkey_time import billed_commands, slowlog_us
from memory import NewTurn, SessionStore, open_store, session_key
from memory.rules import encode_session

DEFAULT_LIMIT = 1_048_576
TRIMMING = "save_turn that drops the oldest turns"
NOT_TRIMMING = "save_turn into a session with room"


@dataclass
class TrimCost:
    save: str
    session_bytes: int
    valkey_us: float  # median
    billed_commands: float  # median
    dropped: float  # median turns dropped


async def trim_costs(env: BenchEnvironment, samples: int) -> list[TrimCost]:
    """Each sample starts from a session a few hundred bytes short of the default limit, and saves a
    turn of about 2 KB into it."""
    direct = aioredis.Redis(port=env.redis.port)
    await direct.config_set("slowlog-log-slower-than", 0)
    await direct.config_set("slowlog-max-len", 1024)
    turns = filler_turns(2000)
    while len(encode_session(turns).encode()) > DEFAULT_LIMIT - 300:
        turns.pop()
    value = encode_session(turns)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    results = []
    try:
        # The same session: at the limit it is full; with twice the limit it has room.
        for name, limit in ((TRIMMING, DEFAULT_LIMIT), (NOT_TRIMMING, 2 * DEFAULT_LIMIT)):
            settings = env.settings("redis", key_prefix=prefix, max_session_bytes=limit, session_index=False)
            async with open_store(settings) as store:
                results.append(
                    await _measure(store, direct, session_key(prefix, "full"), value, name, samples)
                )
    finally:
        await direct.config_set("slowlog-log-slower-than", 10_000)
        await direct.config_set("slowlog-max-len", 128)
        await direct.aclose()
    return results


async def _measure(
    store: SessionStore, direct: aioredis.Redis, key: str, value: str, name: str, samples: int
) -> TrimCost:
    us, billed, dropped = [], [], []
    for i in range(samples):
        await direct.set(key, value, ex=TTL_SECONDS)
        await direct.config_resetstat()
        await direct.slowlog_reset()
        result = await store.save_turn("full", NewTurn(role="user", content=f"new {i}: {CONTENT * 4}"))
        us.append(await slowlog_us(direct))
        billed.append(await billed_commands(direct))
        dropped.append(result.dropped)
    return TrimCost(
        name,
        len(value.encode()),
        statistics.median(us),
        statistics.median(billed),
        statistics.median(dropped),
    )
