"""The tools' integer parameters take JSON integers only: no strings, no booleans, nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client
from mcp.types import TextContent

from memory import open_store
from server.app import build_server
from server.settings import Settings
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[Client]:
    settings = Settings(**make_settings("sqlite").model_dump())
    async with open_store(settings) as store, Client(build_server(store, settings)) as connected:
        yield connected


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    assert isinstance(result.content[0], TextContent)
    text: str = result.content[0].text
    return text


async def stored_turns(client: Client, session_id: str) -> list[dict[str, Any]]:
    result = await client.call_tool("get_session", {"session_id": session_id})
    assert isinstance(result.structured_content, dict)
    turns: list[dict[str, Any]] = result.structured_content["turns"]
    return turns


@pytest.mark.parametrize("timestamp", ["1732540000000", True, False, 1732540000000.5])
async def test_save_turn_refuses_a_timestamp_that_is_not_a_json_integer(
    client: Client, timestamp: object
) -> None:
    arguments = {"session_id": "typed", "role": "user", "content": "hi", "timestamp": timestamp}
    text = error_text(await client.call_tool("save_turn", arguments))
    assert "timestamp" in text
    assert "Input should be a valid integer" in text
    assert await stored_turns(client, "typed") == []


async def test_save_turn_takes_an_integer_timestamp(client: Client) -> None:
    arguments = {"session_id": "typed", "role": "user", "content": "hi", "timestamp": 1732540000000}
    result = await client.call_tool("save_turn", arguments)
    assert not result.is_error, result.content
    assert await stored_turns(client, "typed") == [
        {"role": "user", "content": "hi", "timestamp": 1732540000000}
    ]


@pytest.mark.parametrize("last", ["5", True])
async def test_get_session_refuses_a_last_that_is_not_a_json_integer(client: Client, last: object) -> None:
    text = error_text(await client.call_tool("get_session", {"session_id": "typed", "last": last}))
    assert "last" in text
    assert "Input should be a valid integer" in text


async def test_the_published_schema_still_says_integer(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    timestamp = tools["save_turn"].input_schema["properties"]["timestamp"]
    last = tools["get_session"].input_schema["properties"]["last"]
    assert [option["type"] for option in timestamp["anyOf"]] == ["integer", "null"]
    assert [option["type"] for option in last["anyOf"]] == ["integer", "null"]
