"""The Upstash backend through the REST gateway: cost per call, retries, NOSCRIPT, auth, timeouts."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import pytest

from localservers.gateway import Fault, UpstashGateway
from localservers.raw import RedisRaw
from memory import (
    ChatTurn,
    NewTurn,
    SessionStore,
    StoreAuthError,
    StoreUnavailableError,
    open_store,
)
from memory.redis_store import RedisStore
from tests.conftest import GATEWAY_TOKEN, SettingsFactory
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio


def turn(content: str, timestamp: int = 1_700_000_000_000) -> ChatTurn:
    return ChatTurn(role="user", content=content, timestamp=timestamp)


@pytest.fixture
async def upstash(make_settings: SettingsFactory) -> AsyncIterator[SessionStore]:
    async with open_store(make_settings("upstash", store_timeout_seconds=2.0)) as store:
        await store.save_turn("warm-up", turn("loads the script into the server's cache"))
        yield store


async def cost_of(
    call: Callable[[], Awaitable[object]], gateway: UpstashGateway, redis_raw: RedisRaw
) -> tuple[list[str], int]:
    """The HTTP requests (their paths) and the billed commands one call makes."""
    gateway.records.clear()
    redis_raw.reset_billing()
    await call()
    return [r.path for r in gateway.records], redis_raw.billed_commands()


async def test_a_short_session_save_is_one_round_trip_and_four_billed_commands_with_the_index(
    upstash: SessionStore, gateway: UpstashGateway, redis_raw: RedisRaw
) -> None:
    create = functools.partial(upstash.save_turn, "s1", turn("m0", 0))
    # EVALSHA + GETRANGE + GET of the deletion marker + SET + the index's ZADD and title's HSET
    assert await cost_of(create, gateway, redis_raw) == (["/"], 6)
    for i in range(1, 3):
        save = functools.partial(upstash.save_turn, "s1", turn(f"m{i}", i))
        assert await cost_of(save, gateway, redis_raw) == (["/"], 4)  # EVALSHA + GETRANGE + SET + ZADD


async def test_duplicate_save_costs_no_more_than_a_new_one(
    upstash: SessionStore, gateway: UpstashGateway, redis_raw: RedisRaw
) -> None:
    await upstash.save_turn("s1", turn("once"))
    again = functools.partial(upstash.save_turn, "s1", turn("once"))
    assert await cost_of(again, gateway, redis_raw) == (["/"], 4)  # EVALSHA + GETRANGE + EXPIRE + ZADD


async def test_read_is_one_round_trip_and_one_command(
    upstash: SessionStore, gateway: UpstashGateway, redis_raw: RedisRaw
) -> None:
    await upstash.save_turn("s1", turn("hi"))
    read = functools.partial(upstash.get_session, "s1", last=1)
    assert await cost_of(read, gateway, redis_raw) == (["/"], 1)


async def test_bytes_sent_per_save_do_not_grow_with_the_session(
    upstash: SessionStore, gateway: UpstashGateway
) -> None:
    sizes = []
    for i in range(200):
        gateway.records.clear()
        await upstash.save_turn("s1", turn("x" * 500, 1_700_000_000_000 + i))
        sizes.append((gateway.records[0].request_bytes, gateway.records[0].response_bytes))
    (request_10, response_10), (request_200, response_200) = sizes[10], sizes[-1]
    assert request_200 == request_10
    assert response_200 == response_10


async def test_saves_keep_working_after_the_script_cache_is_flushed(
    upstash: SessionStore, gateway: UpstashGateway, redis_raw: RedisRaw
) -> None:
    redis_raw.client.script_flush()
    gateway.records.clear()
    result = await upstash.save_turn("s1", turn("after flush"))
    assert result.stored
    assert len(gateway.records) == 2  # EVALSHA answered NOSCRIPT, then EVAL
    gateway.records.clear()
    await upstash.save_turn("s1", turn("cached again", 2))
    assert len(gateway.records) == 1
    assert [t.content for t in await upstash.get_session("s1")] == ["after flush", "cached again"]


async def test_save_whose_response_was_lost_is_retried_and_stored_once(
    upstash: SessionStore, gateway: UpstashGateway
) -> None:
    gateway.records.clear()
    gateway.inject(Fault.DROP_AFTER_EXECUTE)
    result = await upstash.save_turn("s1", turn("sent once, executed twice"))
    assert result.stored is True  # the retry found the turn its own first attempt stored
    assert len([r for r in gateway.records if r.path == "/"]) == 1  # only the retry got an answer
    assert without_ids(await upstash.get_session("s1")) == [turn("sent once, executed twice")]


async def test_timed_out_save_that_executes_late_is_stored_once_after_a_retry(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    async with open_store(make_settings("upstash", store_timeout_seconds=0.5)) as store:
        await store.save_turn("warm-up", turn("script"))
        gateway.inject(Fault.EXECUTE_LATE, seconds=1.0)
        with pytest.raises(StoreUnavailableError, match=r"did not answer within 0.5 s"):
            await store.save_turn("s1", turn("late"))
        retried = await store.save_turn("s1", turn("late"))
        assert retried.stored
        gateway.wait_idle()  # the first request has now executed too
        assert without_ids(await store.get_session("s1")) == [turn("late")]


async def test_a_stalled_gateway_gives_a_clear_error_within_the_timeout(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    async with open_store(make_settings("upstash", store_timeout_seconds=0.5)) as store:
        gateway.inject(Fault.STALL, seconds=5, count=10)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"did not answer within 0\.5 s; try again later"):
            await store.get_session("s1")
        assert time.monotonic() - started < 2.5


async def test_an_error_page_is_reported_as_unavailable_with_its_status(
    upstash: SessionStore, gateway: UpstashGateway
) -> None:
    gateway.inject(Fault.HTML_500, count=3)  # the first try and both retries
    with pytest.raises(
        StoreUnavailableError, match=r"answered HTTP 500; try again later \(the save may have reached"
    ):
        await upstash.save_turn("s1", turn("hi"))
    assert await upstash.get_session("s1") == []


async def test_a_passing_error_page_is_retried(upstash: SessionStore, gateway: UpstashGateway) -> None:
    gateway.inject(Fault.HTML_500)
    assert (await upstash.save_turn("s1", turn("hi"))).stored


async def test_wrong_token_is_reported_without_revealing_it(make_settings: SettingsFactory) -> None:
    wrong = "wrong-token-3c1f0e7a"
    async with open_store(make_settings("upstash", upstash_redis_rest_token=wrong)) as store:
        with pytest.raises(StoreAuthError, match="UPSTASH_REDIS_REST_TOKEN") as caught:
            await store.save_turn("s1", turn("hi"))
        assert wrong not in str(caught.value)
        assert GATEWAY_TOKEN not in str(caught.value)


async def test_unreachable_store_is_not_confused_with_a_missing_session(
    upstash: SessionStore, gateway: UpstashGateway
) -> None:
    await upstash.save_turn("s1", turn("kept"))
    gateway.stop()
    with pytest.raises(
        StoreUnavailableError, match=r"Upstash at http://127\.0\.0\.1:\d+ refused the connection"
    ):
        await upstash.get_session("s1")
    gateway.start()
    assert without_ids(await upstash.get_session("s1")) == [turn("kept")]


@pytest.mark.parametrize("last", [None, 1])
async def test_bytes_that_are_not_utf8_read_as_replacement_characters_as_on_redis(
    upstash: SessionStore, redis_raw: RedisRaw, key_prefix: str, last: int | None
) -> None:
    # The REST client decodes every reply as strict UTF-8; TextDecoder, like Redis reads, replaces.
    key = f"{key_prefix}session:s1"
    value = b'[{"role":"user","content":"\xff\xfe","timestamp":1}]'
    redis_raw.set(key, value)
    assert without_ids(await upstash.get_session("s1", last=last)) == [turn("\ufffd\ufffd", 1)]
    assert redis_raw.get(key) == value


async def test_a_window_cut_inside_a_character_is_read_in_one_getrange(
    upstash: SessionStore, gateway: UpstashGateway, redis_raw: RedisRaw, key_prefix: str
) -> None:
    # Three-byte characters: two windows in three start inside one, which the client cannot decode.
    key = f"{key_prefix}session:s1"
    redis_raw.set(key, "€" * 100)
    adapter = cast(RedisStore, upstash).adapter
    for size in (30, 31, 32):
        gateway.records.clear()
        text, whole = await adapter.tail(key, size)
        assert (text, whole) == ("€" * (size // 3), False)
        assert len(gateway.records) == 1


async def test_location_is_the_endpoint_url(upstash: SessionStore, gateway: UpstashGateway) -> None:
    assert upstash.location == gateway.url
    assert upstash.backend == "upstash"


async def test_an_unavailable_save_names_its_id_and_a_retry_with_it_is_recognised(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    async with open_store(make_settings("upstash", store_timeout_seconds=0.5, store_retries=0)) as store:
        await store.save_turn("warm-up", turn("script"))
        gateway.inject(Fault.EXECUTE_LATE, seconds=1.0)
        with pytest.raises(StoreUnavailableError, match=r'retry the same call with id "([^"]+)"') as caught:
            await store.save_turn("s1", NewTurn(role="user", content="stamped by the server"))
        save_id = caught.value.save_id
        assert save_id is not None
        assert f'id "{save_id}"' in str(caught.value)
        gateway.wait_idle()  # the first attempt has now reached the store after all
        retried = await store.save_turn(
            "s1", NewTurn(role="user", content="stamped by the server", id=save_id)
        )
        (stamp,) = caught.value.timestamps
        assert (retried.stored, retried.timestamp) == (False, stamp)
        assert without_ids(await store.get_session("s1")) == [turn("stamped by the server", stamp)]


async def test_a_server_stamped_save_whose_answer_was_lost_is_stored_once_and_says_stored(
    upstash: SessionStore, gateway: UpstashGateway
) -> None:
    gateway.inject(Fault.DROP_AFTER_EXECUTE)
    result = await upstash.save_turn("s1", NewTurn(role="user", content="first attempt ran"))
    assert result.stored is True
    assert result.new_session is True  # its first attempt created the session
    assert without_ids(await upstash.get_session("s1")) == [turn("first attempt ran", result.timestamp)]
