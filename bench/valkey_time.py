"""What a save costs inside Valkey: its execution time, and the commands and round trips it takes.

Time is read from the SLOWLOG with every command logged (each entry is a command's execution
time, a script's with the commands it ran), summed over everything one save sent. Ours is
compared with the least any append to a JSON array can do inside the store (a Lua GET,
concatenate, SET … EX of the same value; and the same as two plain commands) and with a list's
save given the same script overhead (a Lua RPUSH + EXPIRE).
"""

from __future__ import annotations

import functools
import statistics
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from bench.approaches import (
    LANGCHAIN,
    LLAMAINDEX,
    NOTE,
    langchain_save,
    llamaindex_save,
    note_save,
    ours_save,
    redis_command,
    store_session,
)
from bench.baseline import Command
from bench.data import TTL_SECONDS, new_turns, turn_json
from bench.environment import BenchEnvironment
from localservers.delay_proxy import delayed
from localservers.redis_server import RedisServer
from memory import ChatTurn, open_store, session_key

FLOOR_SCRIPT = """
local value = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], string.sub(value, 1, -2) .. ',' .. ARGV[1] .. ']', 'EX', ARGV[2])
"""
RPUSH_SCRIPT = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""
OURS_TURN = "ours, save_turn"
OURS_EXCHANGE = "ours, save_turns of an exchange (2 turns)"
FLOOR_LUA = "floor: Lua GET + concatenate + SET"
GET_SET = "floor: GET, then SET (two commands)"
RPUSH_LUA = "list: Lua RPUSH + EXPIRE"
# Sessions are put back to their size this often, so that the saves measured do not grow them.
_RESET_EVERY = 10
_NOT_BILLED = ("cmdstat_info", "cmdstat_config", "cmdstat_slowlog", "cmdstat_script")


@dataclass
class ValkeyTime:
    session_turns: int
    us: dict[str, float]  # median µs per save, by approach


@dataclass
class SaveCommands:
    approach: str
    session_turns: int
    round_trips: float
    billed_commands: float


Op = Callable[[list[ChatTurn]], Awaitable[object]]


class _Floors:
    """The floor and list scripts and the two plain commands, by key."""

    def __init__(self, client: aioredis.Redis, floor_sha: str, rpush_sha: str) -> None:
        self.client = client
        self.floor_sha = floor_sha
        self.rpush_sha = rpush_sha

    @classmethod
    async def load(cls, client: aioredis.Redis) -> _Floors:
        return cls(client, await client.script_load(FLOOR_SCRIPT), await client.script_load(RPUSH_SCRIPT))

    async def floor_lua(self, key: str, turns: list[ChatTurn]) -> None:
        (turn,) = turns
        await self.client.evalsha(self.floor_sha, 1, key, turn_json(turn), str(TTL_SECONDS))

    async def get_set(self, key: str, turns: list[ChatTurn]) -> None:
        (turn,) = turns
        value = await self.client.get(key)
        assert isinstance(value, bytes)
        await self.client.set(key, value[:-1] + b"," + turn_json(turn).encode() + b"]", ex=TTL_SECONDS)

    async def rpush_lua(self, key: str, turns: list[ChatTurn]) -> None:
        (turn,) = turns
        await self.client.evalsha(self.rpush_sha, 1, key, turn_json(turn), str(TTL_SECONDS))


async def slowlog_us(client: aioredis.Redis) -> int:
    """The execution time of everything logged since the last SLOWLOG RESET, in µs."""
    entries = await client.slowlog_get(-1)
    return sum(int(e["duration"]) for e in entries if not e["command"].upper().startswith(b"SLOWLOG"))


async def valkey_time(env: BenchEnvironment, lengths: tuple[int, ...], saves: int) -> list[ValkeyTime]:
    """Median Valkey time per save (one turn), ours and the floors interleaved one of each per round.

    Ours, the floor script and the list each run in a Valkey of their own: scripts share one
    Lua VM per server, and the floor's garbage (two copies of the whole value a save) would
    otherwise be collected during whichever script ran next.
    """
    floor_server, list_server = RedisServer().start(), RedisServer().start()
    client = aioredis.Redis(port=env.redis.port)
    floor_client = aioredis.Redis(port=floor_server.port)
    list_client = aioredis.Redis(port=list_server.port)
    clients = (client, floor_client, list_client)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    store = await open_store(env.settings("redis", key_prefix=prefix))
    floors = await _Floors.load(floor_client)
    lists = await _Floors.load(list_client)
    for each in clients:
        await each.config_set("slowlog-log-slower-than", 0)
        await each.config_set("slowlog-max-len", 1024)
    results = []
    try:
        await store.save_turn("warm-up", new_turns(0, 1)[0])
        for turns in lengths:
            names = ("ours", "floor", "plain", "list")
            keys = {name: session_key(prefix, f"{name}-{turns}") for name in names}
            served_by = {"ours": client, "floor": floor_client, "plain": list_client, "list": list_client}
            plans: dict[str, tuple[aioredis.Redis, Op]] = {
                OURS_TURN: (client, functools.partial(ours_save, store, f"ours-{turns}")),
                FLOOR_LUA: (floor_client, functools.partial(floors.floor_lua, keys["floor"])),
                GET_SET: (list_client, functools.partial(lists.get_set, keys["plain"])),
                RPUSH_LUA: (list_client, functools.partial(lists.rpush_lua, keys["list"])),
            }
            samples: dict[str, list[int]] = {name: [] for name in plans}
            for i in range(saves):
                if i % _RESET_EVERY == 0:
                    for name, key in keys.items():
                        await store_session(served_by[name], key, turns, as_list=name == "list")
                turn = new_turns(i, 1)
                for name, (server_client, op) in plans.items():
                    await server_client.slowlog_reset()
                    await op(turn)
                    samples[name].append(await slowlog_us(server_client))
            results.append(ValkeyTime(turns, {k: float(statistics.median(v)) for k, v in samples.items()}))
    finally:
        await client.config_set("slowlog-log-slower-than", 10_000)
        await client.config_set("slowlog-max-len", 128)
        await store.aclose()
        for each in clients:
            await each.aclose()
        floor_server.stop()
        list_server.stop()
    return results


async def billed_commands(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if not name.startswith(_NOT_BILLED))


async def save_commands(env: BenchEnvironment, lengths: tuple[int, ...], saves: int) -> list[SaveCommands]:
    """Billed commands (INFO commandstats, script calls included) and round trips per save.

    Every client reaches Valkey through a proxy that adds no delay and counts round trips.
    """
    direct = aioredis.Redis(port=env.redis.port)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    results = []
    with delayed(env.redis.port, 0) as proxy:
        via = aioredis.Redis(port=proxy.port)
        store = await open_store(
            env.settings("redis", key_prefix=prefix, redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        )
        floors = await _Floors.load(via)
        command: Command = redis_command(via)
        try:
            await store.save_turn("warm-up", new_turns(0, 1)[0])
            await via.ping()
            for turns in lengths:
                key = session_key(prefix, f"s-{turns}")
                ours: Op = functools.partial(ours_save, store, f"s-{turns}")
                plans: dict[str, tuple[Op, bool]] = {
                    OURS_TURN: (ours, False),
                    OURS_EXCHANGE: (ours, False),
                    FLOOR_LUA: (functools.partial(floors.floor_lua, key), False),
                    NOTE: (functools.partial(note_save, command, key), False),
                    RPUSH_LUA: (functools.partial(floors.rpush_lua, key), True),
                    LANGCHAIN: (functools.partial(langchain_save, command, key), True),
                    LLAMAINDEX: (functools.partial(llamaindex_save, command, key), True),
                }
                for name, (op, as_list) in plans.items():
                    count = 2 if name == OURS_EXCHANGE else 1
                    trips, billed = [], []
                    await store_session(direct, key, turns, as_list)
                    for i in range(saves):
                        await direct.config_resetstat()
                        before = proxy.round_trips
                        await op(new_turns(i, count))
                        trips.append(proxy.round_trips - before)
                        billed.append(await billed_commands(direct))
                    results.append(SaveCommands(name, turns, statistics.mean(trips), statistics.mean(billed)))
        finally:
            await store.aclose()
            await via.aclose()
            await direct.aclose()
    return results
