"""Sharing one database with the design note's TypeScript layer (`@upstash/redis` get/set).

That layer stores `JSON.stringify(turns)` with `SET key value EX 604800` and
reads with `GET` + `JSON.parse`. Here the real `upstash-redis` Python client
plays its part through the gateway, writing exactly what it would write.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from upstash_redis.asyncio import Redis as UpstashRedis

from localservers.gateway import UpstashGateway
from memory import ChatTurn, NewTurn, SessionStore, open_store
from tests.conftest import GATEWAY_TOKEN, SettingsFactory

pytestmark = pytest.mark.anyio


def json_stringify(value: Any) -> str:
    """What JavaScript's JSON.stringify gives for plain arrays, objects, strings and integers."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def stored_text(client: UpstashRedis, key: str) -> str:
    value = await client.get(key)
    assert isinstance(value, str)
    return value


@pytest.fixture
async def typescript_side(gateway: UpstashGateway) -> AsyncIterator[UpstashRedis]:
    client = UpstashRedis(url=gateway.url, token=GATEWAY_TOKEN, allow_telemetry=False)
    yield client
    await client.close()


@pytest.fixture(params=["upstash", "redis"])
async def shared_store(
    request: pytest.FixtureRequest, make_settings: SettingsFactory
) -> AsyncIterator[SessionStore]:
    async with open_store(make_settings(request.param)) as store:
        yield store


async def test_the_typescript_layer_reads_what_we_write(
    shared_store: SessionStore, typescript_side: UpstashRedis, key_prefix: str
) -> None:
    await shared_store.save_turn(
        "u1", ChatTurn(role="user", content="Hej! Hvordan går det?", timestamp=1732540000000)
    )
    await shared_store.save_turn(
        "u1", ChatTurn(role="assistant", content='Godt, tak. "Og dig?"', timestamp=1732540001000)
    )
    parsed = json.loads(await stored_text(typescript_side, f"{key_prefix}session:u1"))
    # Each turn also carries the id of the save that stored it; JSON.parse keeps it as one more field.
    assert [{k: v for k, v in turn.items() if k != "id"} for turn in parsed] == [
        {"role": "user", "content": "Hej! Hvordan går det?", "timestamp": 1732540000000},
        {"role": "assistant", "content": 'Godt, tak. "Og dig?"', "timestamp": 1732540001000},
    ]
    assert all(isinstance(turn["id"], str) for turn in parsed)
    assert 604_790 <= await typescript_side.ttl(f"{key_prefix}session:u1") <= 604_800


async def test_we_read_and_append_to_what_the_typescript_layer_wrote(
    shared_store: SessionStore, typescript_side: UpstashRedis, key_prefix: str
) -> None:
    written = [
        {"role": "user", "content": "første besked\nmed linjeskift", "timestamp": 1732540000000},
        {"role": "assistant", "content": "svar 👍", "timestamp": 1732540000500},
    ]
    await typescript_side.set(f"{key_prefix}session:u1", json_stringify(written), ex=604800)

    turns = await shared_store.get_session("u1")
    assert [t.model_dump(exclude_none=True) for t in turns] == written

    result = await shared_store.save_turn(
        "u1", ChatTurn(role="user", content="tredje", timestamp=1732540001000)
    )
    assert (result.stored, result.new_session) == (True, False)
    stored = await typescript_side.get(f"{key_prefix}session:u1")
    third = {"role": "user", "content": "tredje", "timestamp": 1732540001000, "id": result.id}
    assert stored == json_stringify([*written, third])


async def test_the_typescript_layer_appends_to_what_we_wrote_and_our_retries_still_find_their_turns(
    shared_store: SessionStore, typescript_side: UpstashRedis, key_prefix: str
) -> None:
    ours = await shared_store.save_turn("u1", NewTurn(role="user", content="hello"))
    # The design note's save: GET, JSON.parse, push, JSON.stringify, SET with the TTL.
    key = f"{key_prefix}session:u1"
    turns = json.loads(await stored_text(typescript_side, key))
    turns.append({"role": "assistant", "content": "hi!", "timestamp": 1732540000000})
    await typescript_side.set(key, json_stringify(turns), ex=604800)

    read = await shared_store.get_session("u1")
    assert [(t.content, t.id) for t in read] == [("hello", ours.id), ("hi!", None)]
    retry = await shared_store.save_turn("u1", NewTurn(role="user", content="hello", id=ours.id))
    assert (retry.stored, retry.timestamp) == (False, ours.timestamp)
    assert len(await shared_store.get_session("u1")) == 2


async def test_a_turn_the_typescript_layer_already_saved_is_not_saved_again(
    shared_store: SessionStore, typescript_side: UpstashRedis, key_prefix: str
) -> None:
    written = [{"role": "user", "content": "hello", "timestamp": 1732540000000}]
    await typescript_side.set(f"{key_prefix}session:u1", json_stringify(written), ex=604800)
    result = await shared_store.save_turn(
        "u1", ChatTurn(role="user", content="hello", timestamp=1732540000000)
    )
    assert result.stored is False
    assert json.loads(await stored_text(typescript_side, f"{key_prefix}session:u1")) == written
