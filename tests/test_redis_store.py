"""Redis-protocol specifics: credentials, reachability, foreign key types, the script cache."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from localservers.raw import RedisRaw
from localservers.redis_server import RedisServer, free_port
from memory import ChatTurn, CorruptSessionError, StoreAuthError, StoreUnavailableError, open_store
from tests.conftest import SettingsFactory
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio

HI = ChatTurn(role="user", content="hi", timestamp=1)


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password="s3cret-pa55word").start()
    yield server
    server.stop()


async def test_wrong_password_is_reported_without_revealing_it(
    make_settings: SettingsFactory, password_server: RedisServer
) -> None:
    url = f"redis://:wrong-pa55word@127.0.0.1:{password_server.port}/0"
    async with open_store(make_settings("redis", redis_url=url)) as store:
        with pytest.raises(StoreAuthError, match="rejected the credentials") as caught:
            await store.get_session("s1")
        assert "wrong-pa55word" not in str(caught.value)
        assert "wrong-pa55word" not in store.location


async def test_right_password_works(make_settings: SettingsFactory, password_server: RedisServer) -> None:
    async with open_store(make_settings("redis", redis_url=password_server.url)) as store:
        assert (await store.save_turn("s1", HI)).stored
        assert store.location == f"redis://127.0.0.1:{password_server.port}/0"


async def test_unreachable_server_is_unavailable_not_empty(make_settings: SettingsFactory) -> None:
    async with open_store(make_settings("redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")) as store:
        with pytest.raises(
            StoreUnavailableError, match=r"Redis at redis://127\.0\.0\.1:\d+/0 refused the connection"
        ):
            await store.get_session("s1")


async def test_an_ipv6_url_is_shown_bracketed_and_without_its_password(
    make_settings: SettingsFactory,
) -> None:
    port = free_port()
    async with open_store(make_settings("redis", redis_url=f"redis://alice:s3cret@[::1]:{port}/0")) as store:
        assert store.location == f"redis://[::1]:{port}/0"
        with pytest.raises(StoreUnavailableError) as caught:
            await store.get_session("s1")
        assert str(caught.value).startswith(f"Redis at redis://[::1]:{port}/0 refused the connection")
        assert "s3cret" not in str(caught.value)
        assert "alice" not in str(caught.value)


@pytest.mark.parametrize("backend", ["redis", "upstash"])
async def test_a_key_of_another_redis_type_is_reported_and_left_alone(
    make_settings: SettingsFactory, redis_raw: RedisRaw, key_prefix: str, backend: str
) -> None:
    key = f"{key_prefix}session:s1"
    redis_raw.client.hset(key, "field", "value")
    async with open_store(make_settings(backend)) as store:
        with pytest.raises(CorruptSessionError, match="Redis type other than a string"):
            await store.get_session("s1")
        with pytest.raises(CorruptSessionError, match="left unchanged"):
            await store.save_turn("s1", HI)
        assert redis_raw.client.hgetall(key) == {b"field": b"value"}


@pytest.mark.parametrize("last", [None, 1])
async def test_bytes_that_are_not_utf8_read_as_replacement_characters(
    make_settings: SettingsFactory, redis_raw: RedisRaw, key_prefix: str, last: int | None
) -> None:
    # As the design note's TextDecoder does: redis-py hands over bytes, so nothing fails to decode.
    redis_raw.set(f"{key_prefix}session:s1", b'[{"role":"user","content":"a\xffb","timestamp":1}]')
    async with open_store(make_settings("redis")) as store:
        assert without_ids(await store.get_session("s1", last=last)) == [
            ChatTurn(role="user", content="a\ufffdb", timestamp=1)
        ]


async def test_redis_saves_keep_working_after_the_script_cache_is_flushed(
    make_settings: SettingsFactory, redis_raw: RedisRaw
) -> None:
    async with open_store(make_settings("redis")) as store:
        await store.save_turn("s1", HI)
        redis_raw.client.script_flush()
        assert (await store.save_turn("s1", ChatTurn(role="assistant", content="hello", timestamp=2))).stored
        assert len(await store.get_session("s1")) == 2


async def test_a_server_that_never_answers_gives_a_clear_error_within_the_timeout(
    make_settings: SettingsFactory,
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never replies
    port = silent.getsockname()[1]
    settings = make_settings("redis", redis_url=f"redis://127.0.0.1:{port}/0", store_timeout_seconds=0.5)
    with silent:
        async with open_store(settings) as store:
            started = time.monotonic()
            with pytest.raises(
                StoreUnavailableError, match=r"did not answer within 0\.5 s|could not reach Redis"
            ):
                await store.save_turn("s1", HI)
            assert time.monotonic() - started < 2.0
