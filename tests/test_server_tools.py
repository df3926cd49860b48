"""The MCP tools through an in-memory client: results, errors, and the published schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import Tool

from localservers.raw import RawAccess
from memory import StoreConfig, now_ms, open_store
from server.app import build_server
from tests.conftest import GATEWAY_TOKEN, SettingsFactory, server_settings
from tests.support.results import error_text, structured

pytestmark = pytest.mark.anyio

PUBLISHED_TOOLS = Path(__file__).parent / "fixtures" / "tools_list.json"


@pytest.fixture
def store_config(backend: str, make_settings: SettingsFactory) -> StoreConfig:
    return make_settings(backend, max_content_chars=1000)


async def tools_by_name(client: Client) -> dict[str, Tool]:
    return {tool.name: tool for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
async def test_save_without_a_session_id_starts_a_new_session(client: Client) -> None:
    saved = structured(await client.call_tool("save_turn", {"role": "user", "content": "Hello!"}))
    assert saved["new_session"] is True
    assert saved["stored"] is True
    assert abs(saved["timestamp"] - now_ms()) < 60_000  # the server's clock
    assert len(saved["session_id"]) == 22
    again = structured(
        await client.call_tool(
            "save_turn", {"role": "assistant", "content": "Hi.", "session_id": saved["session_id"]}
        )
    )
    assert again["new_session"] is False
    assert again["stored"] is True


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_two_new_sessions_get_different_ids(client: Client) -> None:
    first = structured(await client.call_tool("save_turn", {"role": "user", "content": "a"}))
    second = structured(await client.call_tool("save_turn", {"role": "user", "content": "a"}))
    assert first["session_id"] != second["session_id"]


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
async def test_get_session_returns_the_saved_turns_oldest_first(client: Client) -> None:
    for i, role in enumerate(["user", "assistant", "user"]):
        await client.call_tool(
            "save_turn", {"session_id": "chat-1", "role": role, "content": f"m{i}", "timestamp": i}
        )
    read = structured(await client.call_tool("get_session", {"session_id": "chat-1"}))
    assert read["turns"] == [
        {"role": "user", "content": "m0", "timestamp": 0},
        {"role": "assistant", "content": "m1", "timestamp": 1},
        {"role": "user", "content": "m2", "timestamp": 2},
    ]
    assert read["turn_count"] == 3
    newest = structured(await client.call_tool("get_session", {"session_id": "chat-1", "last": 1}))
    assert newest["turns"] == [{"role": "user", "content": "m2", "timestamp": 2}]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_timestamp_defaults_to_the_servers_clock_in_milliseconds(client: Client) -> None:
    import time

    before = time.time_ns() // 1_000_000
    await client.call_tool("save_turn", {"session_id": "c", "role": "user", "content": "now"})
    after = time.time_ns() // 1_000_000
    (turn,) = structured(await client.call_tool("get_session", {"session_id": "c"}))["turns"]
    assert before <= turn["timestamp"] <= after


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_unknown_session_reads_as_empty(client: Client) -> None:
    assert structured(await client.call_tool("get_session", {"session_id": "nobody"}))["turns"] == []


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
async def test_delete_session_forgets_it(client: Client) -> None:
    await client.call_tool("save_turn", {"session_id": "c", "role": "user", "content": "x"})
    assert structured(await client.call_tool("delete_session", {"session_id": "c"}))["deleted"] is True
    assert structured(await client.call_tool("get_session", {"session_id": "c"}))["turns"] == []
    assert structured(await client.call_tool("delete_session", {"session_id": "c"}))["deleted"] is False


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_retried_save_reports_it_was_already_stored(client: Client) -> None:
    arguments = {"session_id": "c", "role": "user", "content": "x", "timestamp": 5}
    assert structured(await client.call_tool("save_turn", arguments))["stored"] is True
    assert structured(await client.call_tool("save_turn", arguments))["stored"] is False


# -- errors the model can act on ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("session_id", "expected"),
    [
        ("has space", "should match pattern"),
        ("", "at least 1 character"),
        ("zero\u200bwidth", "Invalid session id"),
    ],
)
async def test_invalid_session_id_is_a_tool_error(client: Client, session_id: str, expected: str) -> None:
    for tool, extra in [
        ("save_turn", {"role": "user", "content": "x"}),
        ("get_session", {}),
        ("delete_session", {}),
    ]:
        assert expected in error_text(await client.call_tool(tool, {"session_id": session_id, **extra}))


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_content_too_large_is_a_tool_error(client: Client) -> None:
    text = error_text(
        await client.call_tool("save_turn", {"session_id": "c", "role": "user", "content": "x" * 1001})
    )
    assert "at most 1000 characters" in text


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_misspelt_argument_is_refused_so_a_retry_is_not_stored_twice(client: Client) -> None:
    arguments = {"session_id": "typo", "role": "user", "content": "x", "timestmap": 1764000000000}
    for _ in range(2):
        refused = await client.call_tool("save_turn", arguments)
        assert refused.is_error
        assert "save_turn has no argument 'timestmap'; its arguments are" in error_text(refused)
        assert "timestamp" in error_text(refused)
    assert structured(await client.call_tool("get_session", {"session_id": "typo"}))["turns"] == []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_role_outside_the_enum_is_a_tool_error(client: Client) -> None:
    text = error_text(
        await client.call_tool("save_turn", {"session_id": "c", "role": "system", "content": "x"})
    )
    assert "'user' or 'assistant'" in text


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
async def test_a_full_session_drops_its_oldest_turns_and_the_save_says_how_many(
    make_settings: SettingsFactory, backend: str
) -> None:
    settings = server_settings(make_settings, backend, max_session_bytes=1024)
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        for _ in range(3):
            await client.call_tool("save_turn", {"session_id": "c", "role": "user", "content": "x" * 250})
        saved = structured(
            await client.call_tool("save_turn", {"session_id": "c", "role": "user", "content": "y"})
        )
        assert saved["stored"] is True
        assert saved["dropped"] == 1
        read = structured(await client.call_tool("get_session", {"session_id": "c"}))
        assert (read["turn_count"], read["dropped"]) == (3, 1)
        assert read["turns"][-1]["content"] == "y"


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
async def test_with_refuse_a_full_session_is_a_tool_error_and_keeps_the_session(
    make_settings: SettingsFactory, backend: str
) -> None:
    settings = server_settings(make_settings, backend, max_session_bytes=1024, when_full="refuse")
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        for i in range(3):
            await client.call_tool(
                "save_turn", {"session_id": "c", "role": "user", "content": "x" * 250, "timestamp": i}
            )
        text = error_text(
            await client.call_tool("save_turn", {"session_id": "c", "role": "user", "content": "x" * 250})
        )
        assert text.startswith("Error executing tool save_turn: Session full:")
        assert structured(await client.call_tool("get_session", {"session_id": "c"}))["turn_count"] == 3


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
async def test_a_value_that_is_not_a_session_is_a_tool_error(
    client: Client, raw: RawAccess, key_prefix: str
) -> None:
    raw.set(f"{key_prefix}session:c", "not a session")
    for tool, extra in [("get_session", {}), ("save_turn", {"role": "user", "content": "x"})]:
        assert "Not a session:" in error_text(await client.call_tool(tool, {"session_id": "c", **extra}))
    assert raw.get(f"{key_prefix}session:c") == b"not a session"


@pytest.mark.parametrize("backend", ["upstash"])
async def test_store_unavailable_is_a_tool_error_saying_try_again(client: Client, gateway: Any) -> None:
    gateway.stop()
    text = error_text(await client.call_tool("get_session", {"session_id": "c"}))
    assert "Store unavailable: Upstash at http://127.0.0.1" in text
    assert text.endswith("try again later")
    assert text.count("try again") == 1, "said once"


async def test_rejected_credentials_are_a_tool_error_without_the_token(
    make_settings: SettingsFactory,
) -> None:
    settings = server_settings(make_settings, "upstash", upstash_redis_rest_token="not-the-token-9d8e")
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        text = error_text(await client.call_tool("get_session", {"session_id": "c"}))
    assert "Store rejected the credentials" in text
    assert "not-the-token-9d8e" not in text
    assert GATEWAY_TOKEN not in text
    assert "Traceback" not in text


# -- the published schema ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_tools_publish_titles_descriptions_and_true_annotations(client: Client) -> None:
    tools = await tools_by_name(client)
    assert set(tools) == {"save_turn", "save_turns", "get_session", "list_sessions", "delete_session"}
    expected_hints = {
        "save_turn": (False, False, False),
        "save_turns": (False, False, False),
        "get_session": (True, False, True),
        "list_sessions": (True, False, True),
        "delete_session": (False, True, True),
    }
    for name, (read_only, destructive, idempotent) in expected_hints.items():
        tool = tools[name]
        assert tool.title
        assert tool.description
        assert "session" in tool.description
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is read_only
        assert tool.annotations.destructive_hint is destructive
        assert tool.annotations.idempotent_hint is idempotent
        assert tool.annotations.open_world_hint is False
        assert tool.output_schema is not None


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_published_tools_list_is_unchanged(make_settings: SettingsFactory, backend: str) -> None:
    """Everything a host sees of the tools at the default limits, pinned byte for byte.

    After a deliberate change, write the new list (the `actual` text) to the fixture file.
    """
    settings = server_settings(make_settings, backend, max_content_chars=100_000, session_ttl_seconds=604_800)
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        tools = (await client.list_tools()).tools
    published = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    actual = json.dumps(published, indent=2, ensure_ascii=False) + "\n"
    assert actual == PUBLISHED_TOOLS.read_text(encoding="utf-8")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_input_schema_carries_the_enum_and_the_configured_limits(client: Client) -> None:
    save = (await tools_by_name(client))["save_turn"].input_schema
    properties = save["properties"]
    assert properties["role"]["enum"] == ["user", "assistant"]
    assert properties["content"]["maxLength"] == 1000
    assert save["required"] == ["role", "content"]
    session_id = next(option for option in properties["session_id"]["anyOf"] if option["type"] == "string")
    assert (session_id["minLength"], session_id["maxLength"]) == (1, 128)
    timestamp = next(option for option in properties["timestamp"]["anyOf"] if option["type"] == "integer")
    assert (timestamp["minimum"], timestamp["maximum"]) == (0, 2**53 - 1)
    get = (await tools_by_name(client))["get_session"].input_schema
    last = next(option for option in get["properties"]["last"]["anyOf"] if option["type"] == "integer")
    assert last["minimum"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_output_schemas_describe_the_results(client: Client) -> None:
    tools = await tools_by_name(client)
    save_output = tools["save_turn"].output_schema or {}
    assert {"session_id", "new_session", "stored", "timestamp", "expires_at"} <= set(
        save_output["properties"]
    )
    assert "turn_count" not in save_output["properties"]
    get_output = tools["get_session"].output_schema or {}
    assert {"session_id", "turns", "turn_count"} <= set(get_output["properties"])
    turn_schema = get_output["properties"]["turns"]["items"]
    assert turn_schema["properties"]["role"]["enum"] == ["user", "assistant"]
    assert "$ref" not in str(get_output)


# -- save_turns ---------------------------------------------------------------------------

EXCHANGE = [
    {"role": "user", "content": "What's the capital of Peru?", "timestamp": 1_764_000_000_000},
    {"role": "assistant", "content": "Lima.", "timestamp": 1_764_000_000_900},
]


async def test_an_exchange_is_saved_in_one_call_and_read_back_in_order(client: Client) -> None:
    saved = structured(await client.call_tool("save_turns", {"turns": EXCHANGE}))
    assert saved["new_session"] is True
    assert saved["turns"] == [{"timestamp": t["timestamp"], "stored": True} for t in EXCHANGE]
    read = structured(await client.call_tool("get_session", {"session_id": saved["session_id"]}))
    assert read["turns"] == EXCHANGE


async def test_a_retried_exchange_is_stored_once_and_says_so(client: Client) -> None:
    first = structured(await client.call_tool("save_turns", {"session_id": "c", "turns": EXCHANGE}))
    again = structured(await client.call_tool("save_turns", {"session_id": "c", "turns": EXCHANGE}))
    assert [t["stored"] for t in first["turns"]] == [True, True]
    assert [t["stored"] for t in again["turns"]] == [False, False]
    assert structured(await client.call_tool("get_session", {"session_id": "c"}))["turns"] == EXCHANGE


async def test_turns_without_timestamps_get_the_servers_clock_and_are_never_merged(client: Client) -> None:
    same = [{"role": "user", "content": "ok"}, {"role": "user", "content": "ok"}]
    saved = structured(await client.call_tool("save_turns", {"session_id": "c", "turns": same}))
    stamps = [t["timestamp"] for t in saved["turns"]]
    assert len(set(stamps)) == 2
    assert abs(stamps[0] - now_ms()) < 60_000
    read = structured(await client.call_tool("get_session", {"session_id": "c"}))
    assert [t["timestamp"] for t in read["turns"]] == stamps


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
async def test_a_batch_past_the_session_limit_is_an_error_and_stores_nothing(
    make_settings: SettingsFactory, backend: str
) -> None:
    settings = server_settings(make_settings, backend, max_session_bytes=1024)
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        turns = [{"role": "user", "content": "x" * 400, "timestamp": i} for i in range(3)]
        text = error_text(await client.call_tool("save_turns", {"session_id": "c", "turns": turns}))
        assert text.startswith("Error executing tool save_turns: Session full:")
        assert structured(await client.call_tool("get_session", {"session_id": "c"}))["turns"] == []


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([], "at least 1 item"),
        ([{"role": "user", "content": "x", "timestamp": i} for i in range(101)], "at most 100 items"),
        ([{"role": "system", "content": "x"}], "'user' or 'assistant'"),
        ([{"role": "user", "content": "x", "timestamp": True}], "valid integer"),
        ([{"role": "user", "content": "x", "timestamp": "1"}], "valid integer"),
        ([{"role": "user", "content": "x", "mood": "happy"}], "Extra inputs are not permitted"),
        ([{"role": "user", "content": "x" * 1001}], "at most 1000 characters"),
    ],
)
async def test_an_invalid_batch_is_refused_whole(client: Client, turns: list[Any], expected: str) -> None:
    text = error_text(await client.call_tool("save_turns", {"session_id": "c", "turns": turns}))
    assert expected in text
    assert structured(await client.call_tool("get_session", {"session_id": "c"}))["turns"] == []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_batch_schema_caps_its_size(client: Client) -> None:
    schema = (await tools_by_name(client))["save_turns"].input_schema
    turns = schema["properties"]["turns"]
    assert (turns["minItems"], turns["maxItems"]) == (1, 100)
    assert schema["required"] == ["turns"]
