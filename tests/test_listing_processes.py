"""Finding a conversation again through the real console script, over stdio and HTTP, on every
backend: list_sessions page by page, resources/list and resources/read, session id completions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import PromptReference, TextResourceContents

from localservers.processes import CONSOLE_SCRIPT, child_env, http_server
from tests.support.mcp_http import mcp_client
from tests.support.results import structured

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "http-test-token-0123456789abcdef"


@pytest.fixture
def http_url(backend_settings: dict[str, str]) -> Iterator[str]:
    with http_server(backend_settings | {"MCP_AUTH_TOKEN": AUTH_TOKEN}) as url:
        yield url


async def save(client: Client, session_id: str, content: str) -> None:
    arguments = {"session_id": session_id, "role": "user", "content": content}
    structured(await client.call_tool("save_turn", arguments))


async def listed(client: Client, **arguments: Any) -> tuple[list[tuple[str, str]], str | None]:
    page = structured(await client.call_tool("list_sessions", arguments))
    return [(s["session_id"], s["title"]) for s in page["sessions"]], page["next_cursor"]


async def find_and_resume(client: Client) -> None:
    """Three conversations saved A, B, C are found again newest first, by tool, resource and completion."""
    for name in ("trip-A", "trip-B", "trip-C"):
        await save(client, name, f"Plan {name}")
    everything, cursor = await listed(client)
    assert everything == [("trip-C", "Plan trip-C"), ("trip-B", "Plan trip-B"), ("trip-A", "Plan trip-A")]
    assert cursor is None

    first, cursor = await listed(client, limit=2)
    assert [session_id for session_id, _ in first] == ["trip-C", "trip-B"]
    assert cursor is not None
    await save(client, "trip-C", "and one more thing")  # between the pages
    rest, last = await listed(client, limit=2, cursor=cursor)
    assert (rest, last) == ([("trip-A", "Plan trip-A")], None)

    resources = (await client.list_resources(cache_mode="bypass")).resources
    assert [(str(r.uri), r.name) for r in resources] == [
        ("session://trip-C", "Plan trip-C"),
        ("session://trip-B", "Plan trip-B"),
        ("session://trip-A", "Plan trip-A"),
    ]
    (content,) = (await client.read_resource(str(resources[1].uri))).contents
    assert isinstance(content, TextResourceContents)
    assert [turn["content"] for turn in json.loads(content.text)["turns"]] == ["Plan trip-B"]

    resume = PromptReference(type="ref/prompt", name="resume_conversation")
    completion = await client.complete(resume, {"name": "session_id", "value": "trip-"})
    assert completion.completion.values == ["trip-C", "trip-B", "trip-A"]

    structured(await client.call_tool("delete_session", {"session_id": "trip-B"}))
    remaining, _ = await listed(client)
    assert [session_id for session_id, _ in remaining] == ["trip-C", "trip-A"]
    completion = await client.complete(resume, {"name": "session_id", "value": "trip-B"})
    assert completion.completion.values == []


async def test_over_stdio(backend_settings: dict[str, str]) -> None:
    parameters = StdioServerParameters(command=CONSOLE_SCRIPT, env=child_env(**backend_settings))
    async with Client(parameters) as client:
        await find_and_resume(client)


async def test_over_http(http_url: str) -> None:
    async with mcp_client(http_url, AUTH_TOKEN) as client:
        await find_and_resume(client)
