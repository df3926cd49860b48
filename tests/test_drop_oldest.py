"""A session that would pass its size limit drops its oldest turns instead of refusing the save,
on every backend: the newest turns kept in order, the value a design-note array within the
limit, reads that say how many turns were dropped, and the refusal still there as a setting."""

from __future__ import annotations

import json

import pytest

from localservers.raw import RawAccess
from memory import ChatTurn, NewTurn, SessionFullError, open_store
from memory.rules import encode_turn
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio

LIMIT = 65_536


def message(i: int) -> NewTurn:
    """A turn of about 500 bytes, numbered."""
    return NewTurn(role="user" if i % 2 == 0 else "assistant", content=f"{i:04d} " + "x" * 470)


async def test_four_hundred_saves_into_a_64_kib_session_all_succeed_and_keep_the_newest(
    make_settings: SettingsFactory, backend: str, raw: RawAccess, key_prefix: str
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=LIMIT)) as store:
        dropped = 0
        for i in range(400):
            result = await store.save_turn("long", message(i))
            assert result.stored
            dropped += result.dropped
        turns = await store.get_session("long")
        numbers = [int(t.content[:4]) for t in turns]
        assert numbers == list(range(400 - len(turns), 400))  # the newest, in order, ending with the last
        assert dropped == 400 - len(turns)
        assert turns[0].dropped == dropped  # a whole read says how many are gone
        assert all(t.dropped is None for t in turns[1:])
        value = raw.get(f"{key_prefix}session:long")
        assert value is not None
        assert len(value) <= LIMIT
        parsed = json.loads(value)  # what JSON.parse gives the TypeScript layer
        assert [p["content"] for p in parsed] == [t.content for t in turns]
        assert all({"role", "content", "timestamp"} <= set(p) for p in parsed)


async def test_a_batch_that_fills_most_of_the_limit_drops_every_older_turn(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=LIMIT)) as store:
        await store.save_turns("s", [message(i) for i in range(60)])
        batch = [message(i) for i in range(1000, 1110)][:100]
        big = await store.save_turns("s", batch)
        assert big.dropped == 60
        assert [int(t.content[:4]) for t in await store.get_session("s")] == list(range(1000, 1100))


async def test_a_retry_after_a_drop_is_still_recognised(make_settings: SettingsFactory, backend: str) -> None:
    async with open_store(make_settings(backend, max_session_bytes=LIMIT)) as store:
        results = [await store.save_turn("s", message(i)) for i in range(200)]
        assert sum(r.dropped for r in results) > 0
        first_kept = (await store.get_session("s"))[0]
        assert first_kept.dropped
        # The oldest turn kept carries the count beside its timestamp: its retry is still found.
        index = int(first_kept.content[:4])
        again = await store.save_turn(
            "s", NewTurn(role=first_kept.role, content=first_kept.content, id=results[index].id)
        )
        assert (again.stored, again.timestamp) == (False, first_kept.timestamp)


async def test_with_refuse_a_full_session_stores_nothing(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=LIMIT, when_full="refuse")) as store:
        saved = 0
        while saved < 400:
            try:
                await store.save_turn("s", message(saved))
            except SessionFullError:
                break
            saved += 1
        before = await store.get_session("s")
        assert len(before) == saved < 400
        with pytest.raises(SessionFullError):
            await store.save_turn("s", message(999))
        assert await store.get_session("s") == before


async def test_a_single_turn_larger_than_the_limit_is_still_refused(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=4096)) as store:
        await store.save_turn("s", message(1))
        with pytest.raises(SessionFullError, match="more than a whole session may hold"):
            await store.save_turn("s", NewTurn(role="user", content="y" * 5000))
        assert len(await store.get_session("s")) == 1


def test_the_count_is_written_after_the_timestamp_and_before_the_id() -> None:
    turn = ChatTurn(role="user", content="hi", timestamp=5, dropped=3, id="a")
    assert encode_turn(turn) == '{"role":"user","content":"hi","timestamp":5,"dropped":3,"id":"a"}'
