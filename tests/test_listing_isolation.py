"""Per-client isolation of what finds a conversation again: over HTTP, with a tokens file and with
JWTs, a client's list_sessions, resources/list and completions show its own sessions only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, PromptReference, ResourceTemplateReference

from tests.support.jwks import AUDIENCE, ISSUER, JwksServer, SigningKey
from tests.support.logged_server import LoggedServer, logged_http_server
from tests.support.mcp_http import mcp_client
from tests.support.results import structured

pytestmark = pytest.mark.anyio

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"
RESUME = PromptReference(type="ref/prompt", name="resume_conversation")
TEMPLATE = ResourceTemplateReference(type="ref/resource", uri="session://{session_id}")


async def save(client: Client, session_id: str, content: str) -> None:
    arguments = {"session_id": session_id, "role": "user", "content": content}
    structured(await client.call_tool("save_turn", arguments))


async def what_each_finds(client: Client) -> tuple[list[str], list[str], list[str], list[str]]:
    """The session ids the tool lists, resources/list names, and both completions offer."""
    page = structured(await client.call_tool("list_sessions", {}))
    listed = [session["session_id"] for session in page["sessions"]]
    resources = [str(r.uri) for r in (await client.list_resources(cache_mode="bypass")).resources]
    by_prompt = (await client.complete(RESUME, {"name": "session_id", "value": "chat"})).completion.values
    by_template = (await client.complete(TEMPLATE, {"name": "session_id", "value": "chat"})).completion.values
    return listed, resources, by_prompt, by_template


async def each_finds_only_its_own(alice: Client, bob: Client) -> None:
    await save(alice, "chat-alice", "alice's plans")
    await save(alice, "chat-shared-id", "alice's side")
    await save(bob, "chat-bob", "bob's plans")
    await save(bob, "chat-shared-id", "bob's side")
    await save(alice, "chat-alice", "alice again")  # her newest
    assert await what_each_finds(alice) == (
        ["chat-alice", "chat-shared-id"],
        ["session://chat-alice", "session://chat-shared-id"],
        ["chat-alice", "chat-shared-id"],
        ["chat-alice", "chat-shared-id"],
    )
    assert await what_each_finds(bob) == (
        ["chat-shared-id", "chat-bob"],
        ["session://chat-shared-id", "session://chat-bob"],
        ["chat-shared-id", "chat-bob"],
        ["chat-shared-id", "chat-bob"],
    )
    # Alice's cursor is hers: bob cannot page through her list with it.
    cursor = structured(await alice.call_tool("list_sessions", {"limit": 1}))["next_cursor"]
    assert cursor is not None
    with pytest.raises(MCPError) as refused:
        await bob.call_tool("list_sessions", {"cursor": cursor})
    assert refused.value.error.code == INVALID_PARAMS
    with pytest.raises(MCPError) as refused:
        await bob.list_resources(cursor=cursor)
    assert refused.value.error.code == INVALID_PARAMS


@pytest.fixture
def tokens_file_server(tmp_path: Path) -> Iterator[LoggedServer]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"alice:{ALICE}\nbob:{BOB}\n# end\n")
    tokens.chmod(0o600)
    settings = {
        "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
        "MCP_TOKENS_FILE": str(tokens),
        "SESSION_ISOLATION": "per-client",
    }
    with logged_http_server(settings, tmp_path / "server.log") as server:
        yield server


async def test_with_a_tokens_file_each_client_finds_only_its_own_sessions(
    tokens_file_server: LoggedServer,
) -> None:
    url = tokens_file_server.base_url
    async with mcp_client(url, ALICE) as alice, mcp_client(url, BOB) as bob:
        await each_finds_only_its_own(alice, bob)


async def test_with_jwts_each_subject_finds_only_its_own_sessions(tmp_path: Path) -> None:
    key = SigningKey("key-1")
    with JwksServer(key) as jwks:
        settings = {
            "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
            "MCP_JWT_JWKS_URL": jwks.url,
            "MCP_JWT_ISSUER": ISSUER,
            "MCP_JWT_AUDIENCE": AUDIENCE,
            "MCP_PUBLIC_URL": AUDIENCE,
            "SESSION_ISOLATION": "per-client",
        }
        with logged_http_server(settings, tmp_path / "server.log") as server:
            async with (
                mcp_client(server.base_url, key.token("auth0|alice")) as alice,
                mcp_client(server.base_url, key.token("auth0|bob")) as bob,
            ):
                await each_finds_only_its_own(alice, bob)
