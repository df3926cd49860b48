"""The storage contract, identical for every backend (SQLite, Redis, Upstash through the gateway)."""

from __future__ import annotations

import json

import pytest

from localservers.raw import RawAccess
from memory import (
    ChatTurn,
    CorruptSessionError,
    InvalidRequestError,
    InvalidSessionIdError,
    SessionFullError,
    SessionStore,
    TurnTooLargeError,
    now_ms,
    open_store,
)
from tests.conftest import SettingsFactory
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio

SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000


def turn(content: str, timestamp: int = 1_700_000_000_000, role: str = "user") -> ChatTurn:
    return ChatTurn(role=role, content=content, timestamp=timestamp)  # type: ignore[arg-type]


async def test_missing_session_reads_as_empty(store: SessionStore) -> None:
    assert await store.get_session("never-saved") == []


async def test_saved_turns_come_back_oldest_first(store: SessionStore) -> None:
    turns = [turn(f"message {i}", 1_700_000_000_000 + i, "user" if i % 2 else "assistant") for i in range(5)]
    for count, saved in enumerate(turns, start=1):
        result = await store.save_turn("s1", saved)
        assert result.stored
        assert result.session_id == "s1"
        assert result.new_session is (count == 1)
        assert result.timestamp == saved.timestamp
    assert without_ids(await store.get_session("s1")) == turns


async def test_save_reports_expiry_seven_days_ahead(store: SessionStore) -> None:
    before = now_ms()
    result = await store.save_turn("s1", turn("hi"))
    assert before + SEVEN_DAYS_MS <= result.expires_at <= now_ms() + SEVEN_DAYS_MS


async def test_last_returns_only_the_newest_turns(store: SessionStore) -> None:
    turns = [turn(f"m{i}", 1_700_000_000_000 + i) for i in range(6)]
    for saved in turns:
        await store.save_turn("s1", saved)
    assert without_ids(await store.get_session("s1", last=2)) == turns[-2:]
    assert without_ids(await store.get_session("s1", last=100)) == turns


@pytest.mark.parametrize("last", [0, -3])
async def test_last_below_one_is_refused(store: SessionStore, last: int) -> None:
    with pytest.raises(InvalidRequestError, match="last must be at least 1"):
        await store.get_session("s1", last=last)


async def test_delete_forgets_the_session(store: SessionStore) -> None:
    await store.save_turn("s1", turn("hi"))
    assert await store.delete_session("s1") is True
    assert await store.get_session("s1") == []
    assert await store.delete_session("s1") is False


async def test_sessions_are_independent(store: SessionStore) -> None:
    await store.save_turn("a", turn("for a"))
    await store.save_turn("b", turn("for b"))
    assert [t.content for t in await store.get_session("a")] == ["for a"]
    assert [t.content for t in await store.get_session("b")] == ["for b"]


async def test_same_turn_saved_twice_is_stored_once(store: SessionStore) -> None:
    first = await store.save_turn("s1", turn("hello"))
    again = await store.save_turn("s1", turn("hello"))
    assert (first.stored, again.stored) == (True, False)
    assert again.timestamp == first.timestamp
    assert without_ids(await store.get_session("s1")) == [turn("hello")]


async def test_turns_differing_only_in_role_or_timestamp_are_distinct(store: SessionStore) -> None:
    await store.save_turn("s1", turn("ok", 1, "user"))
    await store.save_turn("s1", turn("ok", 1, "assistant"))
    await store.save_turn("s1", turn("ok", 2, "user"))
    assert len(await store.get_session("s1")) == 3


async def test_unicode_and_control_characters_round_trip(store: SessionStore) -> None:
    content = 'héllo 👋 "quoted" \\ back\nslash\ttab \x01\x7f \u2028 {"role":"user"} ends with \\'
    await store.save_turn("s1", turn(content))
    assert without_ids(await store.get_session("s1")) == [turn(content)]


async def test_stored_value_is_the_design_notes_compact_json(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    await store.save_turns("s1", [turn('say "hi"\n', 1_700_000_000_000, "user")], "m-1")
    await store.save_turns("s1", [turn("héllo", 1_700_000_000_001, "assistant")], "m-2")
    expected = (
        '[{"role":"user","content":"say \\"hi\\"\\n","timestamp":1700000000000,"id":"m-1"},'
        '{"role":"assistant","content":"héllo","timestamp":1700000000001,"id":"m-2"}]'
    )
    assert raw.get(f"{key_prefix}session:s1") == expected.encode()


async def test_save_sets_the_ttl_and_reads_do_not_extend_it(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    key = f"{key_prefix}session:s1"
    await store.save_turn("s1", turn("one"))
    assert SEVEN_DAYS_MS - 5000 < raw.ttl_ms(key) <= SEVEN_DAYS_MS
    raw.set(key, raw.get(key) or b"", ttl_seconds=100)
    await store.get_session("s1")
    assert raw.ttl_ms(key) <= 100_000
    await store.save_turn("s1", turn("two"))
    assert SEVEN_DAYS_MS - 5000 < raw.ttl_ms(key) <= SEVEN_DAYS_MS


async def test_a_duplicate_save_still_resets_the_ttl(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    key = f"{key_prefix}session:s1"
    await store.save_turn("s1", turn("one"))
    raw.set(key, raw.get(key) or b"", ttl_seconds=100)
    await store.save_turn("s1", turn("one"))
    assert raw.ttl_ms(key) > 100_000


async def test_expired_session_reads_as_empty_and_starts_afresh(
    backend: str, make_settings: SettingsFactory, raw: RawAccess, key_prefix: str
) -> None:
    async with open_store(make_settings(backend, session_ttl_seconds=1)) as store:
        await store.save_turn("s1", turn("old"))
        key = f"{key_prefix}session:s1"
        assert 0 < raw.ttl_ms(key) <= 1000
        raw.expire_now(key)  # the second it was given has run out
        assert await store.get_session("s1") == []
        result = await store.save_turn("s1", turn("new"))
        assert result.new_session
        assert without_ids(await store.get_session("s1")) == [turn("new")]


async def test_key_prefix_is_prepended_to_the_design_notes_key(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    await store.save_turn("user-42", turn("hi"))
    assert raw.get(f"{key_prefix}session:user-42") is not None


# -- limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_id", "problem"),
    [
        ("", "empty"),
        ("a" * 129, "129 characters"),
        ("has space", "U\\+0020"),
        ("tab\there", "U\\+0009"),
        ("new\nline", "U\\+000A"),
        ("zero\u200bwidth", "U\\+200B"),
        ("nul\x00", "U\\+0000"),
    ],
)
async def test_invalid_session_ids_are_refused_by_every_operation(
    store: SessionStore, session_id: str, problem: str
) -> None:
    with pytest.raises(InvalidSessionIdError, match=problem):
        await store.get_session(session_id)
    with pytest.raises(InvalidSessionIdError, match=problem):
        await store.save_turn(session_id, turn("hi"))
    with pytest.raises(InvalidSessionIdError, match=problem):
        await store.delete_session(session_id)


@pytest.mark.parametrize("session_id", ["a", "a" * 128, "user:42/chat#1", "ünïcode-ok", "Zm9v_YmFy-"])
async def test_valid_session_ids_are_accepted(store: SessionStore, session_id: str) -> None:
    await store.save_turn(session_id, turn("hi"))
    assert len(await store.get_session(session_id)) == 1


async def test_content_over_the_limit_is_refused_and_nothing_is_stored(
    backend: str, make_settings: SettingsFactory
) -> None:
    async with open_store(make_settings(backend, max_content_chars=10)) as store:
        await store.save_turn("s1", turn("0123456789"))
        with pytest.raises(TurnTooLargeError, match="11 characters; the maximum is 10"):
            await store.save_turn("s1", turn("0123456789x", 2))
        assert without_ids(await store.get_session("s1")) == [turn("0123456789")]


async def test_with_refuse_a_save_past_the_session_size_limit_is_refused_and_the_value_kept(
    backend: str, make_settings: SettingsFactory, raw: RawAccess, key_prefix: str
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=1024, when_full="refuse")) as store:
        for i in range(3):
            await store.save_turn("s1", turn("x" * 250, i))
        before = raw.get(f"{key_prefix}session:s1")
        with pytest.raises(SessionFullError, match="1024 bytes"):
            await store.save_turn("s1", turn("x" * 250, 99))
        assert raw.get(f"{key_prefix}session:s1") == before
        assert len(await store.get_session("s1")) == 3


async def test_first_turn_larger_than_the_session_limit_is_refused(
    backend: str, make_settings: SettingsFactory
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=1024)) as store:
        with pytest.raises(SessionFullError):
            await store.save_turn("s1", turn("x" * 1100))
        assert await store.get_session("s1") == []


async def test_a_batch_larger_than_a_whole_session_is_refused_and_nothing_stored(
    backend: str, make_settings: SettingsFactory
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=1024)) as store:
        with pytest.raises(SessionFullError, match=r"the 3 turns take \d+ bytes as stored, more than"):
            await store.save_turns("s1", [turn("x" * 400, i) for i in range(3)])
        assert await store.get_session("s1") == []


NOT_SESSIONS = [
    "not json at all",
    '"a string"',
    "42",
    '{"role":"user","content":"x","timestamp":1}',
    "[1,2,3]",
    '[{"foo":"bar"}]',
    '[{"role":"user","content":"x","timestamp":1}',
    '[{"role":"robot","content":"x","timestamp":1}]',
    '[{"role":"user","content":"x","timestamp":1.5}]',
    '[{"role":"user","content":"x","timestamp":"1"}]',
    '[{"role":"user","content":"x","timestamp":-1}]',
    '[{"role":"user","content":"x"}]',
    '[{"role":"user","content":"x","timestamp":1,"extra":true}]',
    '[{"role":"user","content":"x","timestamp":1}] trailing',
    '[{"role":"user","content":"raw\x01control","timestamp":1}]',
    '[{"role":"user","content":"bad \\q escape","timestamp":1}]',
    '[{"role":"user","content":"short \\u12 escape","timestamp":1}]',
    '[\n  {"role":"user","content":"raw\ttab after a pretty-printed line","timestamp":1}\n]',
    '[{"role":"user","content":"unterminated \\"}]',
    "",
]


@pytest.mark.parametrize("value", NOT_SESSIONS)
async def test_value_that_is_not_a_session_is_reported_and_left_unchanged(
    store: SessionStore, raw: RawAccess, key_prefix: str, value: str
) -> None:
    key = f"{key_prefix}session:s1"
    raw.set(key, value)
    with pytest.raises(CorruptSessionError, match="not a JSON array of turns"):
        await store.get_session("s1")
    with pytest.raises(CorruptSessionError, match="left unchanged"):
        await store.save_turn("s1", turn("new"))
    assert raw.get(key) == value.encode()


async def test_readable_variants_of_a_session_are_accepted(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    # Another writer may use spaces, newlines or another key order; the value is still a session.
    key = f"{key_prefix}session:s1"
    raw.set(key, '[\n  {"timestamp": 5, "content": "caf\\u00e9", "role": "assistant"}\n]\n')
    assert without_ids(await store.get_session("s1")) == [turn("café", 5, "assistant")]
    result = await store.save_turn("s1", turn("next", 6))
    assert (result.stored, result.new_session) == (True, False)
    assert without_ids(await store.get_session("s1")) == [turn("café", 5, "assistant"), turn("next", 6)]
    assert json.loads(raw.get(key) or b"") == [
        {"timestamp": 5, "content": "café", "role": "assistant"},
        {"role": "user", "content": "next", "timestamp": 6, "id": result.id},
    ]


async def test_a_repeated_field_takes_its_last_value_as_json_parse_does(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    raw.set(f"{key_prefix}session:s1", '[{"role":"user","content":"x","timestamp":1,"role":"assistant"}]')
    assert without_ids(await store.get_session("s1")) == [turn("x", 1, "assistant")]
    assert (await store.save_turn("s1", turn("y", 2))).stored
    assert without_ids(await store.get_session("s1")) == [turn("x", 1, "assistant"), turn("y", 2)]


async def test_empty_array_is_an_empty_session(store: SessionStore, raw: RawAccess, key_prefix: str) -> None:
    raw.set(f"{key_prefix}session:s1", "[]")
    assert await store.get_session("s1") == []
    result = await store.save_turns("s1", [turn("first")], "m-1")
    assert (result.new_session, result.turns[0].stored) == (False, True)
    assert (
        raw.get(f"{key_prefix}session:s1")
        == b'[{"role":"user","content":"first","timestamp":1700000000000,"id":"m-1"}]'
    )
