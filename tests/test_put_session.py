"""Putting a whole session (what an import does), on every backend: written with its timestamps,
ids and expiry when missing, never changing one that exists, listed like any other."""

from __future__ import annotations

import time

import pytest

from localservers.raw import RawAccess
from memory import ChatTurn, InvalidRequestError, NewTurn, SessionFullError, SessionStore, open_store
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio

TURNS = [
    ChatTurn(role="user", content="Capital of Peru?", timestamp=1_764_000_000_000, id="q1"),
    ChatTurn(role="assistant", content="Lima.", timestamp=1_764_000_000_500),
]


def in_a_day() -> int:
    return int(time.time() * 1000) + 86_400_000


async def test_a_missing_session_is_written_whole_with_its_expiry(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    expires_at = in_a_day()
    assert await store.put_session("s", TURNS, expires_at) == "written"
    assert await store.get_session("s") == TURNS
    assert abs(raw.ttl_ms(f"{key_prefix}session:s") - (expires_at - time.time() * 1000)) < 2000
    (listed,) = (await store.list_sessions()).sessions
    assert (listed.session_id, listed.title) == ("s", "Capital of Peru?")


async def test_putting_the_same_session_again_changes_nothing(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    await store.put_session("s", TURNS, in_a_day())
    before = raw.get(f"{key_prefix}session:s")
    assert await store.put_session("s", TURNS, in_a_day() + 5000) == "unchanged"
    assert raw.get(f"{key_prefix}session:s") == before


async def test_an_existing_session_with_other_turns_is_left_as_it_is(store: SessionStore) -> None:
    await store.save_turn("s", NewTurn(role="user", content="already here"))
    assert await store.put_session("s", TURNS, in_a_day()) == "differs"
    assert [t.content for t in await store.get_session("s")] == ["already here"]


async def test_a_session_past_its_expiry_is_not_written(store: SessionStore) -> None:
    assert await store.put_session("s", TURNS, int(time.time() * 1000) - 1) == "expired"
    assert await store.get_session("s") == []


async def test_a_session_larger_than_the_limit_is_refused(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=1024)) as store:
        big = [ChatTurn(role="user", content="x" * 600, timestamp=i) for i in range(2)]
        with pytest.raises(SessionFullError, match="it was not written"):
            await store.put_session("s", big, in_a_day())
        assert await store.get_session("s") == []


async def test_a_retry_of_a_put_turn_is_recognised_by_its_id(store: SessionStore) -> None:
    await store.put_session("s", TURNS, in_a_day())
    again = await store.save_turn("s", NewTurn(role="user", content="Capital of Peru?", id="q1"))
    assert (again.stored, again.timestamp) == (False, 1_764_000_000_000)


async def test_two_turns_with_one_id_are_refused(store: SessionStore) -> None:
    twins = [
        ChatTurn(role="user", content="a", timestamp=1, id="same"),
        ChatTurn(role="assistant", content="b", timestamp=2, id="same"),
    ]
    with pytest.raises(InvalidRequestError, match="have the same id"):
        await store.put_session("s", twins, in_a_day())
    assert await store.get_session("s") == []
