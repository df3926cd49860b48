"""The prompts: resuming a stored conversation, the memory guide, and their argument checks."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, GetPromptResult, TextContent

from localservers.gateway import UpstashGateway
from memory import ChatTurn, SessionStore, open_store
from server.app import build_server
from server.prompts import memory_guide, optional_session_id, parse_last, resume_messages
from server.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio

WEEK = 604_800
CONVERSATION = [
    ChatTurn(role="user", content="My name is Ada.", timestamp=1),
    ChatTurn(role="assistant", content="Nice to meet you, Ada.", timestamp=2),
    ChatTurn(role="user", content="What is my name?", timestamp=3),
    ChatTurn(role="assistant", content="Ada.", timestamp=4),
]


def roles_and_texts(result: GetPromptResult) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for message in result.messages:
        assert isinstance(message.content, TextContent)
        pairs.append((message.role, message.content.text))
    return pairs


async def prompt_error(client: Client, name: str, arguments: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await client.get_prompt(name, arguments)
    return caught.value


# -- the plain functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, None), ("", None), ("  ", None), ("1", 1), (" 12 ", 12), ("007", 7), ("9" * 5000, 10**18)],
)
def test_parse_last_reads_a_whole_number_or_nothing(text: str | None, expected: int | None) -> None:
    assert parse_last(text) == expected


@pytest.mark.parametrize("text", ["0", "000", "-1", "+2", "1.5", "abc", "3 turns", "1e3", "٣"])
def test_parse_last_refuses_anything_but_a_positive_whole_number(text: str) -> None:
    with pytest.raises(MCPError) as caught:
        parse_last(text)
    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message == (
        f"Invalid argument: last must be a whole number of 1 or more (got {text!r}); "
        "leave it empty for all turns"
    )


def test_optional_session_id_is_checked_only_when_given() -> None:
    assert optional_session_id(None) is None
    assert optional_session_id("") is None
    assert optional_session_id("chat-1") == "chat-1"
    with pytest.raises(MCPError) as caught:
        optional_session_id("two words")
    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message.startswith("Invalid session id: ")


def test_resume_messages_keep_each_turns_role_and_order() -> None:
    messages = resume_messages("c", CONVERSATION, WEEK)
    assert [(m.role, m.content) for m in messages] == [
        (turn.role, TextContent(type="text", text=turn.content)) for turn in CONVERSATION
    ]


def test_resuming_an_empty_session_gives_one_user_message_saying_so() -> None:
    (message,) = resume_messages("gone-1", [], WEEK)
    assert message.role == "user"
    assert isinstance(message.content, TextContent)
    assert "'gone-1'" in message.content.text
    assert "no turns are stored" in message.content.text
    assert "7 days" in message.content.text


def test_the_guide_names_the_tools_the_id_and_safe_retries() -> None:
    guide = memory_guide(WEEK)
    for phrase in [
        "save_turn",
        "get_session",
        "delete_session",
        "Keep that id and pass it as session_id",
        "Every save has an id",
        "repeat the same call with that id: the turn is stored once",
        "A repeat without the id is a new message",
        "expires 7 days after its last save",
    ]:
        assert phrase in guide
    assert all(line.startswith("- ") for line in guide.splitlines()[1:])


def test_the_guide_for_a_known_session_says_to_read_it_first() -> None:
    guide = memory_guide(3600, "chat-9")
    assert "session id is 'chat-9'" in guide
    assert "First call get_session" in guide
    assert "starts a new session" not in guide
    assert "3600 seconds" in guide


# -- through an MCP client -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_prompts_are_listed_with_described_arguments(client: Client) -> None:
    prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
    assert set(prompts) == {"resume_conversation", "remember_conversation"}
    for prompt in prompts.values():
        assert prompt.title
        assert prompt.description
        for argument in prompt.arguments or []:
            assert argument.description
    resume_arguments = {a.name: a.required for a in prompts["resume_conversation"].arguments or []}
    assert resume_arguments == {"session_id": True, "last": False, "before": False, "max_chars": False}
    guide_arguments = {a.name: a.required for a in prompts["remember_conversation"].arguments or []}
    assert guide_arguments == {"session_id": False}


async def test_resume_returns_the_stored_turns_with_their_roles_oldest_first(
    client: Client, store: SessionStore
) -> None:
    for turn in CONVERSATION:
        await client.call_tool(
            "save_turn", {"session_id": "user:42/chat#1", **turn.model_dump(exclude_none=True)}
        )
    result = await client.get_prompt("resume_conversation", {"session_id": "user:42/chat#1"})
    assert roles_and_texts(result) == [(turn.role, turn.content) for turn in CONVERSATION]
    assert without_ids(await store.get_session("user:42/chat#1")) == CONVERSATION


async def test_resume_with_last_gives_only_the_newest_turns(client: Client) -> None:
    for turn in CONVERSATION:
        await client.call_tool("save_turn", {"session_id": "c", **turn.model_dump(exclude_none=True)})
    result = await client.get_prompt("resume_conversation", {"session_id": "c", "last": "3"})
    assert roles_and_texts(result) == [(turn.role, turn.content) for turn in CONVERSATION[1:]]
    result = await client.get_prompt("resume_conversation", {"session_id": "c", "last": "99"})
    assert len(result.messages) == 4


async def test_resume_with_before_and_max_chars_gives_that_window(client: Client) -> None:
    for turn in CONVERSATION:
        await client.call_tool("save_turn", {"session_id": "c", **turn.model_dump(exclude_none=True)})
    before = str(CONVERSATION[2].timestamp)
    result = await client.get_prompt("resume_conversation", {"session_id": "c", "before": before})
    assert roles_and_texts(result) == [(turn.role, turn.content) for turn in CONVERSATION[:2]]
    newest = str(len(CONVERSATION[-1].content))
    result = await client.get_prompt("resume_conversation", {"session_id": "c", "max_chars": newest})
    assert roles_and_texts(result) == [(CONVERSATION[-1].role, CONVERSATION[-1].content)]


async def test_resuming_a_session_that_dropped_turns_says_so_first(make_settings: SettingsFactory) -> None:
    settings = Settings(**make_settings("sqlite", max_session_bytes=4096).model_dump())
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        for i in range(20):
            await client.call_tool(
                "save_turn", {"session_id": "long", "role": "user", "content": f"{i} " + "x" * 400}
            )
        result = await client.get_prompt("resume_conversation", {"session_id": "long"})
    (role, note), *kept = roles_and_texts(result)
    assert role == "user"
    assert note == (
        f"(The {20 - len(kept)} oldest turns of this conversation were dropped to keep it under its size "
        "limit; it continues from here.)"
    )
    assert kept[-1][1].startswith("19 ")


async def test_resuming_an_unknown_session_says_nothing_is_stored(client: Client) -> None:
    result = await client.get_prompt("resume_conversation", {"session_id": "nobody"})
    ((role, text),) = roles_and_texts(result)
    assert role == "user"
    assert "'nobody'" in text
    assert "no turns are stored" in text


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"session_id": "c", "last": "0"}, "Invalid argument: last must be a whole number of 1 or more"),
        ({"session_id": "c", "last": "two"}, "Invalid argument: last must be a whole number of 1 or more"),
        ({"session_id": "c", "before": "-5"}, "Invalid argument: before must be a whole number of 0 or more"),
        ({"session_id": "c", "max_chars": "lots"}, "Invalid argument: max_chars must be a whole number of 0"),
        ({}, "Invalid argument: missing required argument session_id"),
        ({"session_id": "c", "limit": "2"}, "Invalid argument: unknown argument limit"),
        ({"session_id": "has space"}, "Invalid session id: "),
        ({"session_id": ""}, "Invalid session id: the session id is empty"),
    ],
)
async def test_bad_resume_arguments_are_invalid_params_saying_why(
    client: Client, arguments: dict[str, Any], message: str
) -> None:
    error = await prompt_error(client, "resume_conversation", arguments)
    assert error.error.code == INVALID_PARAMS
    assert error.error.message.startswith(message)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_unknown_prompt_is_invalid_params_naming_the_known_ones_without_a_traceback(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        error = await prompt_error(client, "resume_chat", {"session_id": "c"})
    assert error.error.code == INVALID_PARAMS
    assert error.error.message == (
        "Unknown prompt: 'resume_chat'; the prompts are remember_conversation, resume_conversation"
    )
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("backend", ["upstash"])
async def test_resuming_when_the_store_is_unreachable_is_an_error_saying_try_again(
    client: Client, gateway: UpstashGateway
) -> None:
    gateway.stop()
    error = await prompt_error(client, "resume_conversation", {"session_id": "c"})
    assert error.error.code == INTERNAL_ERROR
    assert error.error.message.startswith("Store unavailable:")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_guide_prompt_is_one_user_message(client: Client) -> None:
    ((role, text),) = roles_and_texts(await client.get_prompt("remember_conversation", {}))
    assert role == "user"
    assert text == memory_guide(WEEK)
    ((_, text),) = roles_and_texts(await client.get_prompt("remember_conversation", {"session_id": "c-2"}))
    assert text == memory_guide(WEEK, "c-2")
    error = await prompt_error(client, "remember_conversation", {"session_id": "a b"})
    assert error.error.code == INVALID_PARAMS


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_argument_that_is_not_a_string_is_invalid_params(
    store: SessionStore, settings: Settings
) -> None:
    server = build_server(store, settings)
    with pytest.raises(MCPError) as caught:
        await server.get_prompt("resume_conversation", {"session_id": "c", "last": 3})
    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message == "Invalid argument: prompt arguments are strings; last is not"
