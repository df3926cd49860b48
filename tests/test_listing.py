"""Finding a conversation again: the list_sessions tool, sessions in resources/list, and session
ids completed as they are typed, through an in-memory client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    PromptReference,
    ResourceTemplateReference,
    TextResourceContents,
)

import server.listing
from memory import NewTurn, SessionStore, open_store
from server.app import build_server
from server.resources import session_uri
from server.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.results import error_text, structured

pytestmark = pytest.mark.anyio

RESUME = PromptReference(type="ref/prompt", name="resume_conversation")
JSON_TEMPLATE = ResourceTemplateReference(type="ref/resource", uri="session://{session_id}")
MARKDOWN_TEMPLATE = ResourceTemplateReference(type="ref/resource", uri="session://{session_id}/markdown")


async def save(client: Client, session_id: str, content: str) -> None:
    arguments = {"session_id": session_id, "role": "user", "content": content}
    structured(await client.call_tool("save_turn", arguments))


async def save_three(client: Client) -> None:
    for name in ("A", "B", "C"):
        turns = [{"role": "user", "content": f"Question {name}?"}, {"role": "assistant", "content": "Yes."}]
        structured(await client.call_tool("save_turns", {"session_id": name, "turns": turns}))


async def listed(client: Client, **arguments: Any) -> dict[str, Any]:
    return structured(await client.call_tool("list_sessions", arguments))


def ids(page: dict[str, Any]) -> list[str]:
    return [session["session_id"] for session in page["sessions"]]


async def resource_names(client: Client, cursor: str | None = None) -> list[str]:
    page = await client.list_resources(cursor=cursor, cache_mode="bypass")
    return [resource.name for resource in page.resources]


async def completed(
    client: Client, ref: PromptReference | ResourceTemplateReference, **argument: str
) -> list[str]:
    ((name, value),) = argument.items()
    return (await client.complete(ref, {"name": name, "value": value})).completion.values


@pytest.fixture
async def index_off_client(make_settings: SettingsFactory) -> AsyncIterator[Client]:
    config = make_settings("sqlite", session_index=False)
    async with (
        open_store(config) as store,
        Client(build_server(store, Settings(**config.model_dump()))) as client,
    ):
        yield client


# -- the list_sessions tool ------------------------------------------------------------------------


async def test_list_sessions_lists_the_most_recently_saved_first_with_titles_and_times(
    client: Client,
) -> None:
    await save_three(client)
    page = await listed(client)
    assert [(s["session_id"], s["title"]) for s in page["sessions"]] == [
        ("C", "Question C?"),
        ("B", "Question B?"),
        ("A", "Question A?"),
    ]
    assert page["next_cursor"] is None
    for session in page["sessions"]:
        assert datetime.fromisoformat(session["updated_at_iso"]).timestamp() == session["updated_at"] // 1000
        assert datetime.fromisoformat(session["expires_at_iso"]).timestamp() == session["expires_at"] // 1000
        # The default seven days after the last save (as each backend's clock reads it).
        assert abs(session["expires_at"] - session["updated_at"] - 7 * 24 * 3600 * 1000) < 60_000
    assert set(page["sessions"][0]) == {
        "session_id",
        "title",
        "updated_at",
        "updated_at_iso",
        "expires_at",
        "expires_at_iso",
    }


async def test_a_limit_and_the_cursor_page_on_and_a_save_between_pages_repeats_nothing(
    client: Client,
) -> None:
    await save_three(client)
    first = await listed(client, limit=2)
    assert ids(first) == ["C", "B"]
    assert isinstance(first["next_cursor"], str)
    await save(client, "C", "one more")  # C moves to the top, behind the cursor
    second = await listed(client, limit=2, cursor=first["next_cursor"])
    assert ids(second) == ["A"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_deleted_session_is_no_longer_listed(client: Client) -> None:
    await save_three(client)
    structured(await client.call_tool("delete_session", {"session_id": "B"}))
    assert ids(await listed(client)) == ["C", "A"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_no_sessions_list_as_an_empty_last_page(client: Client) -> None:
    assert await listed(client) == {"sessions": [], "next_cursor": None}


@pytest.mark.parametrize("backend", ["sqlite", "upstash"])
@pytest.mark.parametrize("cursor", ["not-a-cursor", "MTc2NDA5MzA2NzAwMDpB.AAAAAAAAAAAAAAAAAAAAAA", ""])
async def test_a_cursor_the_store_refuses_is_invalid_params(client: Client, cursor: str) -> None:
    await save_three(client)
    with pytest.raises(MCPError) as refused:
        await client.call_tool("list_sessions", {"cursor": cursor})
    assert refused.value.error.code == INVALID_PARAMS
    assert "cursor is not one this server handed out" in refused.value.error.message
    assert "start again without a cursor" in refused.value.error.message


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_altered_cursor_is_invalid_params(client: Client) -> None:
    await save_three(client)
    cursor = (await listed(client, limit=1))["next_cursor"]
    altered = ("B" if cursor[0] != "B" else "C") + cursor[1:]
    with pytest.raises(MCPError) as refused:
        await client.call_tool("list_sessions", {"cursor": altered})
    assert refused.value.error.code == INVALID_PARAMS


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("limit", [0, 101, -1, "5", True, 2.5])
async def test_a_limit_outside_1_to_100_or_not_an_integer_is_refused(client: Client, limit: object) -> None:
    text = error_text(await client.call_tool("list_sessions", {"limit": limit}))
    assert "limit" in text


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_tool_is_read_only_and_pages_at_most_100(client: Client) -> None:
    (tool,) = [tool for tool in (await client.list_tools()).tools if tool.name == "list_sessions"]
    assert tool.annotations is not None
    assert tool.annotations.read_only_hint is True
    assert tool.annotations.idempotent_hint is True
    assert tool.annotations.destructive_hint is False
    assert tool.annotations.open_world_hint is False
    limit = tool.input_schema["properties"]["limit"]
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == ("integer", 1, 100, 20)
    assert "get_session" in (tool.description or "")
    assert "next_cursor" in (tool.description or "")


async def test_with_the_index_off_list_sessions_is_a_tool_error_naming_the_setting(
    index_off_client: Client,
) -> None:
    await save(index_off_client, "A", "hello")
    text = error_text(await index_off_client.call_tool("list_sessions", {}))
    assert "Listing unavailable: this server keeps no session index (SESSION_INDEX=off)" in text


# -- resources/list ----------------------------------------------------------------------------------


async def test_resources_list_shows_the_sessions_newest_first_as_json_resources(client: Client) -> None:
    await save_three(client)
    await save(client, "user:42/chat#1", "Where were we?")
    resources = (await client.list_resources(cache_mode="bypass")).resources
    assert [(r.name, r.title, str(r.uri)) for r in resources] == [
        ("Where were we?", "Where were we?", "session://user%3A42%2Fchat%231"),
        ("Question C?", "Question C?", "session://C"),
        ("Question B?", "Question B?", "session://B"),
        ("Question A?", "Question A?", "session://A"),
    ]
    for resource in resources:
        assert resource.mime_type == "application/json"
        assert "last saved" in (resource.description or "")
        assert resource.annotations is not None
        assert resource.annotations.last_modified is not None


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_listed_resource_reads_as_its_session(client: Client) -> None:
    await save(client, "user:42/chat#1", "Where were we?")
    (resource,) = (await client.list_resources(cache_mode="bypass")).resources
    (content,) = (await client.read_resource(str(resource.uri))).contents
    assert isinstance(content, TextResourceContents)
    stored = json.loads(content.text)
    assert stored["session_id"] == "user:42/chat#1"
    assert [turn["content"] for turn in stored["turns"]] == ["Where were we?"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_session_without_a_title_is_named_by_its_id(client: Client) -> None:
    await save(client, "blank", " \n ")
    (resource,) = (await client.list_resources(cache_mode="bypass")).resources
    assert (resource.name, resource.title) == ("blank", None)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_resources_list_pages_with_the_stores_cursor(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.listing, "RESOURCES_PER_PAGE", 2)
    await save_three(client)
    first = await client.list_resources(cache_mode="bypass")
    assert [r.name for r in first.resources] == ["Question C?", "Question B?"]
    assert first.next_cursor is not None
    await save(client, "C", "one more")
    second = await client.list_resources(cursor=first.next_cursor)
    assert [r.name for r in second.resources] == ["Question A?"]
    assert second.next_cursor is None


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_resources_list_with_a_bad_cursor_is_invalid_params(client: Client) -> None:
    with pytest.raises(MCPError) as refused:
        await client.list_resources(cursor="forged")
    assert refused.value.error.code == INVALID_PARAMS
    assert "cursor" in refused.value.error.message


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_resources_list_without_sessions_is_empty(client: Client) -> None:
    page = await client.list_resources(cache_mode="bypass")
    assert (page.resources, page.next_cursor) == ([], None)


async def test_with_the_index_off_resources_list_is_empty_not_an_error(index_off_client: Client) -> None:
    await save(index_off_client, "A", "hello")
    page = await index_off_client.list_resources(cache_mode="bypass")
    assert (page.resources, page.next_cursor) == ([], None)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_uri_of_a_listed_session_is_the_templates_expansion(client: Client) -> None:
    awkward = ["50%", "q?x=1&y=2", "café", "a/../b"]
    for session_id in awkward:
        await save(client, session_id, "x")
    uris = {str(resource.uri) for resource in (await client.list_resources(cache_mode="bypass")).resources}
    assert uris == {session_uri(session_id) for session_id in awkward}
    for session_id in awkward:
        (content,) = (await client.read_resource(session_uri(session_id))).contents
        assert isinstance(content, TextResourceContents)
        assert json.loads(content.text)["session_id"] == session_id


# -- completion/complete -----------------------------------------------------------------------------


async def test_the_resume_prompts_session_id_completes_to_matching_ids_newest_first(client: Client) -> None:
    for session_id in ("trip-lisbon", "work", "trip-oslo", "trip"):
        await save(client, session_id, "x")
    assert await completed(client, RESUME, session_id="trip-") == ["trip-oslo", "trip-lisbon"]
    assert await completed(client, RESUME, session_id="") == ["trip", "trip-oslo", "work", "trip-lisbon"]
    assert await completed(client, RESUME, session_id="nothing") == []


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("ref", [JSON_TEMPLATE, MARKDOWN_TEMPLATE], ids=["json", "markdown"])
async def test_the_templates_session_id_completes_too(client: Client, ref: ResourceTemplateReference) -> None:
    for session_id in ("user:42/a", "user:42/b", "user:7/c"):
        await save(client, session_id, "x")
    assert await completed(client, ref, session_id="user:42/") == ["user:42/b", "user:42/a"]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("ref", "argument"),
    [
        (RESUME, "last"),
        (PromptReference(type="ref/prompt", name="remember_conversation"), "session_id"),
        (PromptReference(type="ref/prompt", name="no_such_prompt"), "session_id"),
        (ResourceTemplateReference(type="ref/resource", uri="other://{session_id}"), "session_id"),
    ],
    ids=["other-argument", "other-prompt", "unknown-prompt", "other-template"],
)
async def test_other_arguments_and_references_complete_to_nothing(
    client: Client, ref: PromptReference | ResourceTemplateReference, argument: str
) -> None:
    await save(client, "session-1", "x")
    answer = (await client.complete(ref, {"name": argument, "value": "s"})).completion
    assert (answer.values, answer.has_more) == ([], None)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_full_completion_says_there_may_be_more(client: Client, store: SessionStore) -> None:
    for number in range(101):
        await store.save_turn(f"s{number:03d}", NewTurn(role="user", content="x"))
    answer = (await client.complete(RESUME, {"name": "session_id", "value": "s"})).completion
    assert len(answer.values) == 100
    assert answer.has_more is True
    fewer = (await client.complete(RESUME, {"name": "session_id", "value": "s10"})).completion
    assert (fewer.values, fewer.has_more) == (["s100"], False)


async def test_with_the_index_off_completions_are_empty(index_off_client: Client) -> None:
    await save(index_off_client, "A", "hello")
    assert await completed(index_off_client, RESUME, session_id="A") == []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_completions_capability_is_declared(client: Client) -> None:
    assert client.server_capabilities is not None
    assert client.server_capabilities.completions is not None
