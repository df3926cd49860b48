"""The real console script: over stdio as a host launches it, and over streamable HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from localservers.gateway import UpstashGateway
from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env, http_server
from tests.conftest import GATEWAY_TOKEN
from tests.support.results import structured

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "http-test-token-0123456789abcdef"


async def save_and_read_back(client: Client, session_id: str) -> None:
    tools = {tool.name for tool in (await client.list_tools()).tools}
    assert tools == {"save_turn", "save_turns", "get_session", "list_sessions", "delete_session"}
    saved = structured(
        await client.call_tool("save_turn", {"session_id": session_id, "role": "user", "content": "hej"})
    )
    assert saved["stored"] is True
    read = structured(await client.call_tool("get_session", {"session_id": session_id}))
    assert [turn["content"] for turn in read["turns"]] == ["hej"]


def upstash_settings(gateway: UpstashGateway, key_prefix: str) -> dict[str, str]:
    return {
        "UPSTASH_REDIS_REST_URL": gateway.url,
        "UPSTASH_REDIS_REST_TOKEN": GATEWAY_TOKEN,
        "KEY_PREFIX": key_prefix,
    }


# -- stdio -----------------------------------------------------------------------------------


async def test_console_script_over_stdio_on_sqlite(tmp_path: Path) -> None:
    parameters = StdioServerParameters(
        command=CONSOLE_SCRIPT, env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3"))
    )
    async with Client(parameters) as client:
        await save_and_read_back(client, "stdio-1")


async def test_console_script_over_stdio_on_upstash(gateway: UpstashGateway, key_prefix: str) -> None:
    parameters = StdioServerParameters(
        command=CONSOLE_SCRIPT, env=child_env(**upstash_settings(gateway, key_prefix))
    )
    async with Client(parameters) as client:
        await save_and_read_back(client, "stdio-2")
    assert gateway.records, "the server did not go through the Upstash gateway"


def test_invalid_settings_stop_the_server_with_a_clear_message() -> None:
    env = child_env(REDIS_URL="http://user:hunter2@example.com", SESSION_TTL_SECONDS="soon")
    finished = subprocess.run(
        [CONSOLE_SCRIPT], env=env, capture_output=True, text=True, timeout=START_PATIENCE_SECONDS, check=False
    )
    assert finished.returncode != 0
    assert "REDIS_URL: must start with redis://" in finished.stderr
    assert "SESSION_TTL_SECONDS: Input should be a valid integer" in finished.stderr
    assert "hunter2" not in finished.stderr


# -- streamable HTTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("http") / "s.sqlite3"
    with http_server({"SQLITE_PATH": str(database), "MCP_AUTH_TOKEN": AUTH_TOKEN}) as url:
        yield url


@asynccontextmanager
async def http_client(base_url: str, token: str = AUTH_TOKEN) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client,
    ):
        yield client


async def test_http_round_trip_with_the_token(http_url: str) -> None:
    async with http_client(http_url) as client:
        await save_and_read_back(client, "http-1")


def test_http_without_the_right_token_gets_401(http_url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
        answer = httpx.post(f"{http_url}/mcp", json=body, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert AUTH_TOKEN not in answer.text


def test_http_refuses_a_foreign_host_header_with_421(http_url: str) -> None:
    headers = {"Authorization": f"Bearer {AUTH_TOKEN}", "Host": "evil.example.com"}
    answer = httpx.post(
        f"{http_url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers
    )
    assert answer.status_code == 421


def test_healthz_reports_liveness_and_the_store_without_a_token(http_url: str) -> None:
    answer = httpx.get(f"{http_url}/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["store"] == "sqlite"


async def test_two_http_clients_at_once_share_one_session(http_url: str) -> None:
    async def write(name: str) -> None:
        async with http_client(http_url) as client:
            for i in range(10):
                arguments = {
                    "session_id": "shared-http",
                    "role": "user",
                    "content": f"{name}-{i}",
                    "timestamp": i,
                }
                structured(await client.call_tool("save_turn", arguments))

    async with anyio.create_task_group() as group:
        group.start_soon(write, "a")
        group.start_soon(write, "b")
    async with http_client(http_url) as client:
        read = structured(await client.call_tool("get_session", {"session_id": "shared-http"}))
    assert sorted(turn["content"] for turn in read["turns"]) == sorted(
        f"{n}-{i}" for n in "ab" for i in range(10)
    )


async def test_http_on_upstash(gateway: UpstashGateway, key_prefix: str) -> None:
    with http_server(upstash_settings(gateway, key_prefix) | {"MCP_AUTH_TOKEN": AUTH_TOKEN}) as url:
        async with httpx.AsyncClient() as plain:
            assert (await plain.get(f"{url}/healthz")).json()["store"] == "upstash"
        async with http_client(url) as client:
            await save_and_read_back(client, "http-upstash")


def test_refuses_to_serve_on_all_interfaces_without_a_token(tmp_path: Path) -> None:
    finished = subprocess.run(
        [CONSOLE_SCRIPT, "--transport", "http", "--host", "0.0.0.0"],
        env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3")),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert finished.returncode != 0
    assert "refusing to serve HTTP on 0.0.0.0 without authentication" in finished.stderr


def test_stdio_logs_one_startup_line_and_nothing_per_call(tmp_path: Path) -> None:
    messages = [
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
        '"capabilities":{},"clientInfo":{"name":"test","version":"1"}}}',
        '{"jsonrpc":"2.0","method":"notifications/initialized"}',
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"save_turn",'
        '"arguments":{"session_id":"c","role":"user","content":"hi"}}}',
        '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_session",'
        '"arguments":{"session_id":"bad id"}}}',
    ]
    process = subprocess.Popen(
        [CONSOLE_SCRIPT],
        env=child_env(SQLITE_PATH=str(tmp_path / "s.sqlite3")),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n".join(messages) + "\n")
    process.stdin.flush()
    replies = [process.stdout.readline() for _ in range(3)]  # stdout carries only protocol messages
    _, stderr = process.communicate(timeout=START_PATIENCE_SECONDS)
    assert '"isError":true' in next(r for r in replies if '"id":3' in r).replace(" ", "")
    log_lines = stderr.strip().splitlines()
    assert len(log_lines) == 1, stderr
    assert "store sqlite" in log_lines[0]
    assert "transport stdio" in log_lines[0]
    assert "TTL 604800 s" in log_lines[0]


def test_settings_are_read_from_dot_env_in_the_working_directory(tmp_path: Path) -> None:
    database = tmp_path / "from-dot-env.sqlite3"
    (tmp_path / ".env").write_text(f"SQLITE_PATH={database}\nSESSION_TTL_SECONDS=3600\n")
    finished = subprocess.run(
        [CONSOLE_SCRIPT],
        env=child_env(),
        cwd=tmp_path,
        input="",
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert f"store sqlite ({database})" in finished.stderr
    assert "session TTL 3600 s" in finished.stderr
