"""The design note's saveTurn, for comparison only: read the whole session, append, write it all back.

Two HTTP round trips, the whole history over the wire twice, and a lost turn
whenever two saves to one session interleave.
"""

from __future__ import annotations

import json

from upstash_redis.asyncio import Redis as UpstashRedis

from memory import ChatTurn
from memory.rules import encode_session


async def baseline_get_session(client: UpstashRedis, key: str) -> list[ChatTurn]:
    value = await client.get(key)
    return [] if value is None else [ChatTurn.model_validate(turn) for turn in json.loads(value)]


async def baseline_save_turn(
    client: UpstashRedis, key: str, turn: ChatTurn, ttl_seconds: int = 604800
) -> None:
    session = await baseline_get_session(client, key)
    session.append(turn)
    await client.set(key, encode_session(session), ex=ttl_seconds)
