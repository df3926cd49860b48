"""The tools' logic called directly, without MCP: results, memory errors as ToolErrors, the id schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import TypeAdapter, ValidationError

from memory import (
    MAX_SESSION_ID_CHARS,
    InvalidSessionIdError,
    NewTurn,
    SessionStore,
    check_session_id,
    open_store,
)
from server.results import iso_utc
from server.tools import SessionId, SessionTools
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(make_settings: SettingsFactory) -> AsyncIterator[SessionStore]:
    async with open_store(make_settings("sqlite", max_session_bytes=1024, when_full="refuse")) as opened:
        yield opened


@pytest.fixture
def tools(store: SessionStore) -> SessionTools:
    return SessionTools(store)


def user(content: str, timestamp: int | None = None) -> NewTurn:
    return NewTurn(role="user", content=content, timestamp=timestamp)


async def test_save_turn_without_a_session_id_starts_one_and_says_when_it_expires(
    tools: SessionTools,
) -> None:
    saved = await tools.save_turn(user("Hello!", 1_764_000_000_000))
    assert saved.new_session is True
    assert saved.stored is True
    assert saved.timestamp == 1_764_000_000_000
    assert len(saved.session_id) == 22
    assert saved.expires_at_iso == iso_utc(saved.expires_at)
    again = await tools.save_turn(user("Hi again."), saved.session_id)
    assert (again.session_id, again.new_session) == (saved.session_id, False)


async def test_save_turn_repeated_with_its_timestamp_is_not_stored_twice(tools: SessionTools) -> None:
    assert (await tools.save_turn(user("x", 5), "c")).stored is True
    assert (await tools.save_turn(user("x", 5), "c")).stored is False
    assert (await tools.get_session("c")).turn_count == 1


async def test_save_turns_reports_each_turn_and_reads_back_in_order(tools: SessionTools) -> None:
    exchange = [user("Capital of Peru?", 1), NewTurn(role="assistant", content="Lima.", timestamp=2)]
    saved = await tools.save_turns(exchange)
    assert saved.new_session is True
    assert [(t.timestamp, t.stored) for t in saved.turns] == [(1, True), (2, True)]
    assert saved.expires_at_iso == iso_utc(saved.expires_at)
    read = await tools.get_session(saved.session_id)
    assert [(t.role, t.content, t.timestamp) for t in read.turns] == [
        ("user", "Capital of Peru?", 1),
        ("assistant", "Lima.", 2),
    ]


async def test_get_session_counts_what_it_lists_and_last_keeps_the_newest(tools: SessionTools) -> None:
    await tools.save_turns([user(f"m{i}", i) for i in range(3)], "c")
    everything = await tools.get_session("c")
    assert (everything.session_id, everything.turn_count) == ("c", 3)
    newest = await tools.get_session("c", last=2)
    assert [t.content for t in newest.turns] == ["m1", "m2"]
    assert newest.turn_count == 2


async def test_an_unknown_session_reads_as_empty(tools: SessionTools) -> None:
    read = await tools.get_session("nobody")
    assert (read.turns, read.turn_count) == ([], 0)


async def test_delete_session_says_whether_there_was_one(tools: SessionTools) -> None:
    await tools.save_turn(user("x"), "c")
    assert (await tools.delete_session("c")).deleted is True
    assert (await tools.get_session("c")).turns == []
    assert (await tools.delete_session("c")).deleted is False


async def test_an_invalid_session_id_is_a_tool_error_with_its_heading(tools: SessionTools) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: tools.save_turn(user("x"), "zero\u200bwidth"),
        lambda: tools.save_turns([user("x")], "zero\u200bwidth"),
        lambda: tools.get_session("zero\u200bwidth"),
        lambda: tools.delete_session("zero\u200bwidth"),
    ]
    for call in calls:
        with pytest.raises(ToolError, match=r"^Invalid session id: .*\(U\+200B\) at position 4;") as raised:
            await call()
        assert isinstance(raised.value.__cause__, InvalidSessionIdError)


async def test_with_refuse_a_full_session_is_a_tool_error_and_keeps_what_was_stored(
    tools: SessionTools,
) -> None:
    await tools.save_turns([user("x" * 250, i) for i in range(3)], "c")
    with pytest.raises(ToolError, match=r"^Session full: "):
        await tools.save_turn(user("x" * 250), "c")
    with pytest.raises(ToolError, match=r"^Session full: "):
        await tools.save_turns([user("y" * 250, 10), user("y" * 250, 11)], "c")
    assert (await tools.get_session("c")).turn_count == 3


# -- the published session-id schema and check_session_id ----------------------------------

PUBLISHED_ID = TypeAdapter(SessionId)


def refused_by_schema(session_id: str) -> bool:
    try:
        PUBLISHED_ID.validate_python(session_id)
    except ValidationError:
        return True
    return False


def refused_by_check(session_id: str) -> bool:
    try:
        check_session_id(session_id)
    except InvalidSessionIdError:
        return True
    return False


def test_the_published_schema_states_the_rule_from_memory() -> None:
    schema = PUBLISHED_ID.json_schema()
    assert (schema["minLength"], schema["maxLength"], schema["pattern"]) == (
        1,
        MAX_SESSION_ID_CHARS,
        r"^\S+$",
    )


def test_the_schema_and_the_check_agree_on_length() -> None:
    for session_id, refused in [("", True), ("x", False), ("x" * 128, False), ("x" * 129, True)]:
        assert refused_by_schema(session_id) is refused
        assert refused_by_check(session_id) is refused


def test_every_character_the_schema_refuses_the_check_refuses_too() -> None:
    # So no host that validates against the published schema turns away an id the store takes.
    # Checked over every code point, a schema-sized chunk at a time, each refused chunk per character.
    refused: list[str] = []
    for start in range(0, 0x110000, MAX_SESSION_ID_CHARS):
        chunk = "".join(map(chr, range(start, min(start + MAX_SESSION_ID_CHARS, 0x110000))))
        if refused_by_schema(chunk):
            refused += [char for char in chunk if refused_by_schema(char)]
    assert {" ", "\t", "\n", "\u00a0", "\u3000"} <= set(refused)
    assert [char for char in refused if not refused_by_check(f"a{char}b")] == []
