"""Resources, prompts and capabilities through the real console script, over stdio and HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextContent, TextResourceContents

from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env, http_server

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "http-test-token-0123456789abcdef"
SESSION_ID = "user:42/chat#1"
CONVERSATION = [("user", "Remember: the door code is 4711."), ("assistant", "Noted: 4711.")]
# What the server may claim: completions, prompts, resources and tools, and no change
# notifications or resource subscriptions, which it never sends.
TRUTHFUL_CAPABILITIES = {
    "completions": {},
    "prompts": {"listChanged": False},
    "resources": {"subscribe": False, "listChanged": False},
    "tools": {"listChanged": False},
}


@asynccontextmanager
async def http_client(base_url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {AUTH_TOKEN}"}) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client,
    ):
        yield client


@pytest.fixture
def http_url(backend_settings: dict[str, str]) -> Iterator[str]:
    with http_server(backend_settings | {"MCP_AUTH_TOKEN": AUTH_TOKEN}) as url:
        yield url


async def save_read_and_resume(client: Client) -> None:
    """Save an exchange in one call, then read it back as both resources and as the resume prompt."""
    turns = [
        {"role": role, "content": content, "timestamp": timestamp}
        for timestamp, (role, content) in enumerate(CONVERSATION, start=1_764_093_067_000)
    ]
    saved = await client.call_tool("save_turns", {"session_id": SESSION_ID, "turns": turns})
    assert not saved.is_error
    assert saved.structured_content is not None
    assert [turn["stored"] for turn in saved.structured_content["turns"]] == [True, True]

    (json_form,) = (await client.read_resource("session://user%3A42%2Fchat%231")).contents
    assert isinstance(json_form, TextResourceContents)
    assert json_form.mime_type == "application/json"
    stored = json.loads(json_form.text)
    assert stored["session_id"] == SESSION_ID
    assert [(turn["role"], turn["content"]) for turn in stored["turns"]] == CONVERSATION

    (transcript,) = (await client.read_resource("session://user%3A42%2Fchat%231/markdown")).contents
    assert isinstance(transcript, TextResourceContents)
    assert transcript.mime_type == "text/markdown"
    assert "## 1. user, 2025-11-25 17:51:07.000 UTC" in transcript.text
    assert "## 2. assistant, 2025-11-25 17:51:07.001 UTC" in transcript.text

    result = await client.get_prompt("resume_conversation", {"session_id": SESSION_ID})
    messages = []
    for message in result.messages:
        assert isinstance(message.content, TextContent)
        messages.append((message.role, message.content.text))
    assert messages == CONVERSATION
    newest = await client.get_prompt("resume_conversation", {"session_id": SESSION_ID, "last": "1"})
    assert [message.role for message in newest.messages] == ["assistant"]


def advertised(client: Client) -> dict[str, Any]:
    assert client.server_capabilities is not None
    return client.server_capabilities.model_dump(by_alias=True, exclude_none=True)


async def test_over_stdio(backend_settings: dict[str, str]) -> None:
    parameters = StdioServerParameters(command=CONSOLE_SCRIPT, env=child_env(**backend_settings))
    async with Client(parameters) as client:
        assert advertised(client) == TRUTHFUL_CAPABILITIES
        await save_read_and_resume(client)


async def test_over_http(http_url: str) -> None:
    async with http_client(http_url) as client:
        assert advertised(client) == TRUTHFUL_CAPABILITIES
        await save_read_and_resume(client)


# -- what an initialize handshake advertises (the hosts of today use it) ----------------------

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


def test_an_initialize_over_stdio_advertises_no_notifications(tmp_path: Path) -> None:
    finished = subprocess.run(
        [CONSOLE_SCRIPT],
        env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3")),
        input=json.dumps(INITIALIZE) + "\n",
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    reply = json.loads(finished.stdout.splitlines()[0])
    assert reply["result"]["protocolVersion"] == "2025-06-18"
    assert reply["result"]["capabilities"] == TRUTHFUL_CAPABILITIES


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_initialize_over_http_advertises_no_notifications(http_url: str) -> None:
    headers = {"Authorization": f"Bearer {AUTH_TOKEN}", "Accept": "application/json, text/event-stream"}
    answer = httpx.post(f"{http_url}/mcp", json=INITIALIZE, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["result"]["capabilities"] == TRUTHFUL_CAPABILITIES
