"""Every save has an id, stored with its turns: a late or repeated attempt of the same save finds
its own turns and stores nothing again, and no other message is ever taken for it. A save that
began before a delete never brings the session back. On every backend."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

import memory.rules as planning
from localservers.backends import ROW_BACKENDS
from localservers.raw import RawAccess
from memory import (
    ChatTurn,
    DeleteOutdatedError,
    InvalidRequestError,
    NewTurn,
    SessionDeletedError,
    SessionStore,
    StoreUnavailableError,
)
from memory.base_store import BaseStore
from memory.errors import unavailable_during_save
from memory.rules import plan_save

pytestmark = pytest.mark.anyio


def turn(content: str, timestamp: int | None = None, turn_id: str | None = None) -> NewTurn:
    return NewTurn(role="user", content=content, timestamp=timestamp, id=turn_id)


def triples(turns: list[ChatTurn]) -> list[tuple[str, str, int]]:
    return [(t.role, t.content, t.timestamp) for t in turns]


async def test_a_save_returns_its_id_and_stores_it_with_the_turn(store: SessionStore) -> None:
    result = await store.save_turn("s", turn("hello"))
    assert len(result.id) == 12
    (stored,) = await store.get_session("s")
    assert (stored.content, stored.timestamp, stored.id) == ("hello", result.timestamp, result.id)


async def test_the_stored_value_is_json_stringify_of_the_turn_with_its_id_last(
    store: SessionStore, raw: RawAccess, key_prefix: str, backend: str
) -> None:
    await store.save_turn("s", turn("hi", 5, "m-1"))
    value = raw.get(f"{key_prefix}session:s")
    assert value is not None
    assert json.loads(value) == [{"role": "user", "content": "hi", "timestamp": 5, "id": "m-1"}]
    if backend not in ROW_BACKENDS:  # SQLite and PostgreSQL keep rows; their raw views re-encode them
        assert value == b'[{"role":"user","content":"hi","timestamp":5,"id":"m-1"}]'


async def test_a_repeat_with_the_id_of_a_save_without_timestamp_is_stored_once(store: SessionStore) -> None:
    first = await store.save_turn("s", turn("ok"))
    again = await store.save_turn("s", turn("ok", turn_id=first.id))
    assert (again.stored, again.timestamp, again.new_session) == (False, first.timestamp, False)
    assert triples(await store.get_session("s")) == [("user", "ok", first.timestamp)]


async def test_the_id_wins_over_a_new_timestamp(store: SessionStore) -> None:
    first = await store.save_turn("s", turn("ok", 100, "same-save"))
    again = await store.save_turn("s", turn("ok", 200, "same-save"))
    assert (again.stored, again.timestamp) == (False, 100)
    assert len(await store.get_session("s")) == 1
    assert first.id == again.id == "same-save"


async def test_a_batch_stores_one_id_per_turn_and_a_repeat_stores_nothing(store: SessionStore) -> None:
    turns = [turn("question"), NewTurn(role="assistant", content="answer")]
    first = await store.save_turns("s", turns, "exchange-7")
    assert first.id == "exchange-7"
    assert [t.id for t in await store.get_session("s")] == ["exchange-7#0", "exchange-7#1"]
    again = await store.save_turns("s", turns, "exchange-7")
    assert [o.stored for o in again.turns] == [False, False]
    assert [o.timestamp for o in again.turns] == [o.timestamp for o in first.turns]
    assert len(await store.get_session("s")) == 2


async def test_equal_messages_stamped_in_one_millisecond_by_two_servers_are_both_kept(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two server processes share no clock: both may stamp the same millisecond.
    monkeypatch.setattr(planning, "server_stamp", lambda: 1_800_000_000_000)
    first = await store.save_turn("s", turn("ok"))
    second = await store.save_turn("s", turn("ok"))
    assert (first.stored, second.stored) == (True, True)
    assert second.timestamp == first.timestamp + 1
    # Each one's retry finds its own turn, not the other's.
    assert (await store.save_turn("s", turn("ok", turn_id=second.id))).stored is False
    assert (await store.save_turn("s", turn("ok", turn_id=first.id))).stored is False
    assert [t.id for t in await store.get_session("s")] == [first.id, second.id]


async def test_a_retry_by_timestamp_alone_is_still_recognised(store: SessionStore) -> None:
    first = await store.save_turn("s", turn("ok", 42))
    again = await store.save_turn("s", turn("ok", 42))  # another id: recognised by its timestamp
    assert (again.stored, again.timestamp) == (False, 42)
    assert [t.id for t in await store.get_session("s")] == [first.id]


async def test_a_turn_the_typescript_layer_wrote_is_recognised_by_its_timestamp(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    raw.set(f"{key_prefix}session:s", '[{"role":"user","content":"ok","timestamp":42}]')
    assert (await store.save_turn("s", turn("ok", 42))).stored is False
    assert (await store.save_turn("s", turn("ok", 43))).stored is True
    assert triples(await store.get_session("s")) == [("user", "ok", 42), ("user", "ok", 43)]


async def test_an_id_reused_for_another_message_is_refused_and_nothing_is_stored(store: SessionStore) -> None:
    await store.save_turn("s", turn("first", turn_id="msg-1"))
    with pytest.raises(InvalidRequestError, match="the id 'msg-1' belongs to another turn of session 's'"):
        await store.save_turns("s", [turn("second", turn_id="msg-2"), turn("third", turn_id="msg-1")])
    assert [t.content for t in await store.get_session("s")] == ["first"]


@pytest.mark.parametrize(
    "bad",
    ["", "a b", 'quo"te', "x" * 65, "hash#1", "é"],
    ids=["empty", "space", "quote", "long", "hash", "accent"],
)
async def test_an_invalid_id_is_refused_before_the_store_is_asked(store: SessionStore, bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="an id is 1 to 64 ASCII letters"):
        await store.save_turns("s", [turn("x")], bad)
    assert await store.get_session("s") == []


async def test_a_save_that_began_before_a_delete_does_not_bring_the_session_back(store: SessionStore) -> None:
    assert isinstance(store, BaseStore)
    await store.save_turn("s", turn("forget me"))
    # A save planned (begun) now, and executed late: after the delete, as a stalled request would be.
    late = plan_save([turn("said before the delete")], store.config)
    late = dataclasses.replace(late, started_at=late.started_at - 1)
    assert await store.delete_session("s") is True
    key = store._key("", "s")
    with pytest.raises(SessionDeletedError, match="'s' was deleted after this save began"):
        await store._append(key, "s", late)
    assert await store.get_session("s") == []
    # A new save, even repeating the late one's id, is stored: it began after the delete.
    fresh = await store.save_turn("s", turn("a new start", turn_id=late.id))
    assert (fresh.stored, fresh.new_session) == (True, True)
    assert [t.content for t in await store.get_session("s")] == ["a new start"]


async def test_a_late_save_is_refused_where_a_newer_save_created_the_session_again(
    store: SessionStore,
) -> None:
    assert isinstance(store, BaseStore)
    await store.save_turn("s", turn("forget me"))
    late = plan_save([turn("said before the delete")], store.config)
    late = dataclasses.replace(late, started_at=late.started_at - 1)
    await store.delete_session("s")
    await store.save_turn("s", turn("a new conversation"))
    with pytest.raises(SessionDeletedError):
        await store._append(store._key("", "s"), "s", late)
    assert [t.content for t in await store.get_session("s")] == ["a new conversation"]


async def test_a_late_save_after_its_own_retry_leaves_one_copy(store: SessionStore) -> None:
    assert isinstance(store, BaseStore)
    late = plan_save([turn("hello")], store.config)
    late = dataclasses.replace(late, started_at=late.started_at - 1)
    await store.delete_session("s")
    retried = await store.save_turn("s", turn("hello", turn_id=late.id))  # the client's retry
    with pytest.raises(SessionDeletedError):
        await store._append(store._key("", "s"), "s", late)  # then the late original
    assert [(t.content, t.id) for t in await store.get_session("s")] == [("hello", retried.id)]


async def test_a_delete_of_a_missing_session_still_keeps_a_late_save_out(store: SessionStore) -> None:
    assert isinstance(store, BaseStore)
    late = plan_save([turn("in flight")], store.config)
    late = dataclasses.replace(late, started_at=late.started_at - 1)
    assert await store.delete_session("never-saved") is False
    with pytest.raises(SessionDeletedError):
        await store._append(store._key("", "never-saved"), "never-saved", late)
    assert await store.get_session("never-saved") == []


async def test_an_unavailable_store_names_the_id_to_retry_with() -> None:
    error = unavailable_during_save(StoreUnavailableError("the store did not answer"), "abc", [5])
    assert str(error) == (
        'the store did not answer (the save may have reached the store: retry the same call with id "abc", '
        "so that it is stored once)"
    )
    assert (error.save_id, error.timestamps) == ("abc", (5,))


async def test_a_delete_that_began_before_a_landed_save_deletes_nothing(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A delete held past its deadline runs after its own retry deleted the session and a newer
    # save started it again: it must not erase that save.
    old = await store.save_turn("s", turn("before"))
    assert await store.delete_session("s")
    newer = await store.save_turn("s", turn("after the delete"))
    module = sys.modules[type(store).__module__]
    monkeypatch.setattr(module, "now_ms", lambda: old.timestamp + 1)  # when the late delete began
    with pytest.raises(DeleteOutdatedError, match="was saved to after this delete began"):
        await store.delete_session("s")
    monkeypatch.undo()
    assert [t.id for t in await store.get_session("s")] == [newer.id]
    assert await store.delete_session("s")  # a delete made now deletes it
    assert await store.get_session("s") == []


async def test_an_id_given_to_another_batch_is_refused_and_nothing_is_stored(store: SessionStore) -> None:
    await store.save_turns("s", [turn("q"), NewTurn(role="assistant", content="a")], "b1")
    with pytest.raises(InvalidRequestError, match="the id 'b1#2' belongs to another turn"):
        await store.save_turns("s", [turn("q"), NewTurn(role="assistant", content="a"), turn("z")], "b1")
    assert [t.content for t in await store.get_session("s")] == ["q", "a"]


@pytest.mark.parametrize("field", [',"id":null', ',"id":"elsewhere"', ',"dropped":3'])
async def test_a_stored_turn_with_another_field_after_its_timestamp_is_found_by_the_timestamp(
    store: SessionStore, raw: RawAccess, key_prefix: str, field: str
) -> None:
    # As the append script finds it: the turn's JSON up to its timestamp, then any field.
    raw.set(f"{key_prefix}session:s", '[{"role":"user","content":"hi","timestamp":5' + field + "}]")
    again = await store.save_turn("s", NewTurn(role="user", content="hi", timestamp=5))
    assert not again.stored
    assert [(t.content, t.timestamp) for t in await store.get_session("s")] == [("hi", 5)]
