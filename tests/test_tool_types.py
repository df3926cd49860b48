"""The tools take exactly the JSON their published schemas describe: JSON integers only, no
unknown keys in a turn, nothing stored otherwise; and the schemas are self-contained."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mcp import Client

from memory import open_store
from server.app import build_server
from server.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.results import error_text

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(make_settings: SettingsFactory) -> AsyncIterator[Client]:
    settings = Settings(**make_settings("sqlite", max_content_chars=1000).model_dump())
    async with open_store(settings) as store, Client(build_server(store, settings)) as connected:
        yield connected


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


async def test_save_turns_refuses_a_turn_with_an_unknown_key_naming_it(client: Client) -> None:
    # The published schema leaves additionalProperties out (see inline_schema); validation refuses.
    turns = [
        {"role": "user", "content": "hi", "timestamp": 1},
        {"role": "user", "content": "x", "mood": "glad"},
    ]
    text = error_text(await client.call_tool("save_turns", {"session_id": "typed", "turns": turns}))
    assert "turns.1.mood" in text
    assert "Extra inputs are not permitted" in text
    assert await stored_turns(client, "typed") == []


def nested_nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object below the root, with its path."""
    children: list[tuple[str, Any]] = []
    if isinstance(schema, dict):
        children = [(f"{path}/{key}", value) for key, value in schema.items()]
    elif isinstance(schema, list):
        children = [(f"{path}/{index}", value) for index, value in enumerate(schema)]
    for child_path, child in children:
        if isinstance(child, dict):
            yield child_path, child
        yield from nested_nodes(child, child_path)


async def test_every_published_schema_is_inline_with_no_nested_additional_properties(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert tools
    for tool in tools:
        for schema in (tool.input_schema, tool.output_schema):
            assert schema is not None, tool.name
            assert "$ref" not in json.dumps(schema), tool.name
            assert "$defs" not in schema, tool.name
            closed = [path for path, node in nested_nodes(schema) if "additionalProperties" in node]
            assert closed == [], tool.name


async def test_save_turns_states_every_turn_constraint_inline(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    turns = tools["save_turns"].input_schema["properties"]["turns"]
    assert (turns["type"], turns["minItems"], turns["maxItems"]) == ("array", 1, 100)
    turn = turns["items"]
    assert (turn["type"], turn["required"]) == ("object", ["role", "content"])
    assert set(turn["properties"]) == {"role", "content", "timestamp"}
    assert turn["properties"]["role"]["enum"] == ["user", "assistant"]
    assert turn["properties"]["content"]["maxLength"] == 1000
    timestamp = next(o for o in turn["properties"]["timestamp"]["anyOf"] if o["type"] == "integer")
    assert (timestamp["minimum"], timestamp["maximum"]) == (0, 2**53 - 1)
