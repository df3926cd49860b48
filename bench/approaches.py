"""The ways of saving a turn that ours is compared with, each over any Redis-protocol client.

- The design note's `saveTurn` (bench/baseline.py): `GET` the session's JSON array, parse it, append the turn,
  `SET … EX` the whole array again (two round trips, the whole history over the wire twice,
  and a lost turn whenever two saves to one session interleave).
- A Redis list, as LangChain's `RedisChatMessageHistory.add_message` uses it (`LPUSH` of the
  message's JSON, then `EXPIRE` when it has a TTL; `add_messages` calls it once per message;
  `LRANGE 0 -1` reads) and as LlamaIndex's `RedisChatStore.async_add_message` does (`RPUSH`,
  then `EXPIRE` when it has a TTL). Emulated here command for command, without those packages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from upstash_redis.asyncio import Redis as UpstashRedis

from bench.baseline import Command, baseline_save_turn
from bench.data import TTL_SECONDS, filler_turns, session_json, turn_json
from memory import ChatTurn, SessionStore, session_key

# Saves `turns` (one turn, or an exchange of two) to the session called `name`.
Save = Callable[[str, list[ChatTurn]], Awaitable[object]]

OURS = "ours"
NOTE = "design note (GET + SET of the array)"
LANGCHAIN = "LangChain list (LPUSH + EXPIRE per message)"
LLAMAINDEX = "LlamaIndex list (RPUSH + EXPIRE per message)"
APPROACHES = (OURS, NOTE, LANGCHAIN, LLAMAINDEX)
LIST_APPROACHES = (LANGCHAIN, LLAMAINDEX)


def redis_command(client: aioredis.Redis) -> Command:
    async def run(*args: str | int) -> object:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]

    return run


def upstash_command(client: UpstashRedis) -> Command:
    async def run(*args: str | int) -> object:
        return await client.execute(list(args))

    return run


async def note_save(command: Command, key: str, turns: list[ChatTurn]) -> None:
    """The design note's saveTurn (bench/baseline.py), once per turn."""
    for turn in turns:
        await baseline_save_turn(command, key, turn, TTL_SECONDS)


async def langchain_save(command: Command, key: str, turns: list[ChatTurn]) -> None:
    for turn in turns:
        await command("LPUSH", key, turn_json(turn))
        await command("EXPIRE", key, TTL_SECONDS)


async def llamaindex_save(command: Command, key: str, turns: list[ChatTurn]) -> None:
    for turn in turns:
        await command("RPUSH", key, turn_json(turn))
        await command("EXPIRE", key, TTL_SECONDS)


async def ours_save(store: SessionStore, name: str, turns: list[ChatTurn]) -> None:
    if len(turns) == 1:
        await store.save_turn(name, turns[0])
    else:
        await store.save_turns(name, turns)


def savers(store: SessionStore, command: Command, prefix: str) -> dict[str, Save]:
    """Each approach's save; `store` and `command` reach the same server (directly or not)."""

    async def ours(name: str, turns: list[ChatTurn]) -> None:
        await ours_save(store, name, turns)

    async def note(name: str, turns: list[ChatTurn]) -> None:
        await note_save(command, session_key(prefix, name), turns)

    async def langchain(name: str, turns: list[ChatTurn]) -> None:
        await langchain_save(command, session_key(prefix, name), turns)

    async def llamaindex(name: str, turns: list[ChatTurn]) -> None:
        await llamaindex_save(command, session_key(prefix, name), turns)

    return {OURS: ours, NOTE: note, LANGCHAIN: langchain, LLAMAINDEX: llamaindex}


async def store_session(client: aioredis.Redis, key: str, turns: int, as_list: bool) -> None:
    """Put a session of `turns` filler turns at `key`: a JSON array, or a list of turns."""
    await client.delete(key)
    if not as_list:
        await client.set(key, session_json(filler_turns(turns)), ex=TTL_SECONDS)
        return
    for start in range(0, turns, 1000):
        chunk = filler_turns(min(1000, turns - start), first_timestamp=start)
        await client.rpush(key, *(turn_json(turn) for turn in chunk))
    await client.expire(key, TTL_SECONDS)
