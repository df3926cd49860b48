"""Listing a key space's sessions, most recently saved first, page by page, on every backend: the
index each save keeps, its titles, cursors that survive saves in between, and what never shows."""

from __future__ import annotations

import time

import anyio
import pytest

import memory.rules as planning
from memory import (
    InvalidRequestError,
    NewTurn,
    SessionIndexOffError,
    SessionStore,
    open_store,
)
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio


def user(content: str) -> NewTurn:
    return NewTurn(role="user", content=content)


async def save_three(store: SessionStore) -> None:
    for name in ("A", "B", "C"):
        await store.save_turns(
            name, [user(f"Question {name}?"), NewTurn(role="assistant", content=f"Answer {name}.")]
        )


async def listed(store: SessionStore, **options: object) -> list[str]:
    page = await store.list_sessions(**options)  # type: ignore[arg-type]
    return [summary.session_id for summary in page.sessions]


async def test_sessions_list_most_recently_saved_first_with_their_titles(store: SessionStore) -> None:
    await save_three(store)
    page = await store.list_sessions()
    assert [(s.session_id, s.title) for s in page.sessions] == [
        ("C", "Question C?"),
        ("B", "Question B?"),
        ("A", "Question A?"),
    ]
    assert page.next_cursor is None
    first = page.sessions[0]
    assert first.updated_at <= time.time() * 1000 < first.expires_at
    # The last save is dated when it began; it expires a TTL after it ran.
    assert 0 <= first.expires_at - first.updated_at - 7 * 24 * 3600 * 1000 < 60_000


async def test_a_cursor_pages_on_and_a_save_in_between_repeats_nothing(store: SessionStore) -> None:
    await save_three(store)
    first = await store.list_sessions(limit=2)
    assert [s.session_id for s in first.sessions] == ["C", "B"]
    assert first.next_cursor is not None
    await store.save_turn("C", user("one more"))  # C moves to the top, behind the cursor
    second = await store.list_sessions(limit=2, cursor=first.next_cursor)
    assert [s.session_id for s in second.sessions] == ["A"]
    assert second.next_cursor is None


async def test_the_title_is_kept_from_the_first_save(store: SessionStore) -> None:
    await store.save_turn("s", NewTurn(role="assistant", content="Hello! How can I help?"))
    await store.save_turn(
        "s",
        user(
            "  Plan a trip\nto   Lisbon in May, with a budget of about two thousand euros all told please  "
        ),
    )
    await store.save_turn("t", user("Plan a trip to Lisbon"))
    await store.save_turn("t", user("something else"))
    titles = {s.session_id: s.title for s in (await store.list_sessions()).sessions}
    assert titles == {"s": "Hello! How can I help?", "t": "Plan a trip to Lisbon"}


async def test_a_long_first_message_is_cut_at_a_word_to_80_characters(store: SessionStore) -> None:
    await store.save_turn("s", user("word " * 40))
    (summary,) = (await store.list_sessions()).sessions
    assert summary.title is not None
    assert len(summary.title) <= 80
    assert summary.title.endswith("word…")


async def test_a_deleted_session_is_gone_from_the_list(store: SessionStore) -> None:
    await save_three(store)
    assert await store.delete_session("B")
    assert await listed(store) == ["C", "A"]


async def test_an_expired_session_is_gone_from_the_list(make_settings: SettingsFactory, backend: str) -> None:
    async with open_store(make_settings(backend, session_ttl_seconds=1)) as store:
        await store.save_turn("old", user("soon gone"))
        await anyio.sleep(1.2)  # past the TTL: no timing is asserted, only that it has passed
        await store.save_turn("new", user("still here"))
        assert await listed(store) == ["new"]


async def test_another_key_space_lists_its_own_sessions_and_refuses_the_others_cursor(
    store: SessionStore,
) -> None:
    alice, bob = store.view("client:alice:"), store.view("client:bob:")
    for name in ("a1", "a2", "a3"):
        await alice.save_turn(name, user(name))
    await bob.save_turn("b1", user("b1"))
    assert await listed(alice) == ["a3", "a2", "a1"]
    assert await listed(bob) == ["b1"]
    assert await listed(store) == []
    alices = await alice.list_sessions(limit=1)
    assert alices.next_cursor is not None
    with pytest.raises(InvalidRequestError, match="not one this server handed out"):
        await bob.list_sessions(cursor=alices.next_cursor)


@pytest.mark.parametrize("forge", ["x", "", "a.b", "flip"])
async def test_a_forged_or_altered_cursor_is_refused(store: SessionStore, forge: str) -> None:
    await save_three(store)
    cursor = (await store.list_sessions(limit=1)).next_cursor
    assert cursor is not None
    if forge == "flip":
        payload, signature = cursor.split(".")
        forge = payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature
    with pytest.raises(InvalidRequestError, match="not one this server handed out"):
        await store.list_sessions(cursor=forge)


@pytest.mark.parametrize("limit", [0, 101])
async def test_a_page_size_out_of_range_is_refused(store: SessionStore, limit: int) -> None:
    with pytest.raises(InvalidRequestError, match="limit must be from 1 to 100"):
        await store.list_sessions(limit=limit)


async def test_ids_that_start_with_what_was_typed_come_newest_first(store: SessionStore) -> None:
    for name in ("user-1", "team-1", "user-2"):
        await store.save_turn(name, user(name))
    assert await store.session_ids_starting_with("user") == ["user-2", "user-1"]
    assert await store.session_ids_starting_with("") == ["user-2", "team-1", "user-1"]
    assert await store.session_ids_starting_with("nobody") == []


async def test_many_sessions_saved_in_one_millisecond_page_without_a_gap_or_a_repeat(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planning, "now_ms", lambda: 1_900_000_000_000)  # every save, one instant
    for index in range(7):
        await store.save_turn(f"s{index}", user("same time"))
    monkeypatch.undo()
    seen, cursor = [], None
    while True:
        page = await store.list_sessions(limit=3, cursor=cursor)
        seen += [s.session_id for s in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == [f"s{index}" for index in range(7)]
    assert len(seen) == 7


async def test_with_the_index_off_listing_says_so_and_completions_are_empty(
    make_settings: SettingsFactory, backend: str
) -> None:
    async with open_store(make_settings(backend, session_index=False)) as store:
        await store.save_turn("s", user("hi"))
        with pytest.raises(SessionIndexOffError, match="SESSION_INDEX=off"):
            await store.list_sessions()
        assert await store.session_ids_starting_with("") == []
