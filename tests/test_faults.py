"""Faults while the MCP server is serving: each gives a clear error, the server keeps serving,
and no stored turn is lost or doubled."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

import memory.rules as planning
from localservers.gateway import Fault, UpstashGateway
from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env
from localservers.raw import RedisRaw
from memory import ChatTurn, open_store
from server.app import build_server
from server.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.sqlite_lock import locked_by_another_process
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio

TIMEOUT = 0.5


def outcome(result: CallToolResult) -> str:
    """'ok', or the error text."""
    if not result.is_error:
        return "ok"
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text


async def save(client: Client, content: str) -> str:
    arguments = {
        "session_id": "faulty",
        "role": "user",
        "content": content,
        "timestamp": zlib.crc32(content.encode()),  # fixed per content, so a rerun saves the same turns
    }
    return outcome(await client.call_tool("save_turn", arguments))


async def contents(client: Client) -> list[str]:
    result = await client.call_tool("get_session", {"session_id": "faulty"})
    assert isinstance(result.structured_content, dict), result.content
    return [turn["content"] for turn in result.structured_content["turns"]]


@pytest.fixture
async def upstash_client(make_settings: SettingsFactory) -> AsyncIterator[Client]:
    settings = Settings(**make_settings("upstash", store_timeout_seconds=TIMEOUT).model_dump())
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        assert await save(client, "before") == "ok"
        yield client


async def test_stalled_gateway(upstash_client: Client, gateway: UpstashGateway) -> None:
    # The stall outlasts any bound below: an answer that waited for it could not pass.
    gateway.inject(Fault.STALL, seconds=60, count=10)
    started = time.monotonic()
    error = await save(upstash_client, "during")
    elapsed = time.monotonic() - started
    gateway.restore()
    assert "Store unavailable: the upstash store did not answer within 0.5 s; try again later" in error
    assert elapsed < TIMEOUT + 5  # the deadline, with room for a loaded machine
    assert await save(upstash_client, "after") == "ok"
    assert await contents(upstash_client) == ["before", "after"]


async def test_error_page_instead_of_json(upstash_client: Client, gateway: UpstashGateway) -> None:
    gateway.inject(Fault.HTML_500, count=3)  # the first attempt and both retries
    assert "Store unavailable: Upstash at http://127.0.0.1" in await save(upstash_client, "during")
    assert await save(upstash_client, "after") == "ok"
    assert await contents(upstash_client) == ["before", "after"]


async def test_token_rejected(upstash_client: Client, gateway: UpstashGateway) -> None:
    gateway.inject(Fault.UNAUTHORIZED)
    error = await save(upstash_client, "during")
    assert "Store rejected the credentials (a server configuration problem)" in error
    assert await save(upstash_client, "after") == "ok"
    assert await contents(upstash_client) == ["before", "after"]


async def test_connection_dropped_after_the_save_executed(
    upstash_client: Client, gateway: UpstashGateway
) -> None:
    gateway.inject(Fault.DROP_AFTER_EXECUTE)
    assert await save(upstash_client, "during") == "ok"
    assert await contents(upstash_client) == ["before", "during"]


async def test_script_cache_lost(upstash_client: Client, redis_raw: RedisRaw) -> None:
    redis_raw.client.script_flush()
    assert await save(upstash_client, "during") == "ok"
    assert await contents(upstash_client) == ["before", "during"]


async def test_gateway_goes_away_and_comes_back(upstash_client: Client, gateway: UpstashGateway) -> None:
    gateway.stop()
    assert "Store unavailable: Upstash at http://127.0.0.1" in await save(upstash_client, "during")
    gateway.start()
    assert await save(upstash_client, "after") == "ok"
    assert await contents(upstash_client) == ["before", "after"]


async def save_unstamped(client: Client, content: str, save_id: str | None = None) -> str:
    """A save without a timestamp, as a model makes it: 'ok', or the error text."""
    arguments = {"session_id": "faulty", "role": "user", "content": content}
    if save_id is not None:
        arguments["id"] = save_id
    return outcome(await client.call_tool("save_turn", arguments))


def id_to_retry_with(error: str) -> str:
    found = re.search(r'retry the same call with id "([A-Za-z0-9._:-]+)"', error)
    assert found, error
    return found.group(1)


async def test_a_save_that_executes_late_and_its_retry_store_the_turn_once(
    upstash_client: Client, gateway: UpstashGateway
) -> None:
    # 1. The save reaches the store only after its deadline: the client gets an error naming its id.
    gateway.inject(Fault.EXECUTE_LATE, seconds=TIMEOUT * 4)
    error = await save_unstamped(upstash_client, "once")
    assert "Store unavailable" in error
    # 2. The client retries as told, and this attempt lands first.
    assert await save_unstamped(upstash_client, "once", id_to_retry_with(error)) == "ok"
    # 3. The original executes late: it finds its own turn.
    gateway.wait_idle()
    assert await contents(upstash_client) == ["before", "once"]


async def test_a_save_that_executes_after_a_delete_leaves_the_session_deleted(
    upstash_client: Client, gateway: UpstashGateway
) -> None:
    gateway.inject(Fault.EXECUTE_LATE, seconds=TIMEOUT * 4)
    assert "Store unavailable" in await save_unstamped(upstash_client, "said before the delete")
    deleted = await upstash_client.call_tool("delete_session", {"session_id": "faulty"})
    assert deleted.structured_content == {"session_id": "faulty", "deleted": True}
    gateway.wait_idle()  # the late save has run
    assert await contents(upstash_client) == []
    assert await save_unstamped(upstash_client, "a new start") == "ok"
    assert await contents(upstash_client) == ["a new start"]


async def test_a_retry_after_a_failure_that_never_ran_is_not_taken_for_an_equal_message(
    upstash_client: Client, gateway: UpstashGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another server process stamped an equal message in the same millisecond; this server's own
    # retry (the first attempt got a 500 and never ran) must store its message, not find that one.
    monkeypatch.setattr(planning, "server_stamp", lambda: 1_800_000_000_000)
    assert await save_unstamped(upstash_client, "ok") == "ok"
    gateway.inject(Fault.HTML_500)
    assert await save_unstamped(upstash_client, "ok") == "ok"
    assert await contents(upstash_client) == ["before", "ok", "ok"]


# -- SQLite ---------------------------------------------------------------------------------


async def test_sqlite_locked_by_another_process(make_settings: SettingsFactory) -> None:
    settings = Settings(**make_settings("sqlite", store_timeout_seconds=0.3).model_dump())
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        assert await save(client, "before") == "ok"
        with locked_by_another_process(settings.sqlite_path):
            error = await save(client, "during")
        assert "Store unavailable: the session database" in error
        assert "locked by another process" in error
        assert await save(client, "after") == "ok"
        assert await contents(client) == ["before", "after"]


def without_root_privilege(command: list[str]) -> list[str]:
    """Root writes through file permissions; drop that capability so read-only means read-only."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "running as root: setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE"
    return [setpriv, "--bounding-set", "-dac_override", "--inh-caps", "-dac_override", "--", *command]


@pytest.mark.parametrize("read_only", ["file", "directory"])
async def test_sqlite_read_only_gives_a_clear_error_at_start_and_loses_nothing(
    make_settings: SettingsFactory, tmp_path: Path, read_only: str
) -> None:
    settings = make_settings("sqlite", sqlite_path=tmp_path / "db" / "sessions.sqlite3")
    async with open_store(settings) as store:
        await store.save_turn("faulty", ChatTurn(role="user", content="before", timestamp=1))
    target = settings.sqlite_path if read_only == "file" else settings.sqlite_path.parent
    original_mode = target.stat().st_mode
    target.chmod(0o444 if read_only == "file" else 0o555)
    try:
        finished = subprocess.run(
            without_root_privilege([CONSOLE_SCRIPT]),
            env=child_env(SQLITE_PATH=str(settings.sqlite_path), KEY_PREFIX=settings.key_prefix),
            input="",
            capture_output=True,
            text=True,
            timeout=START_PATIENCE_SECONDS,
            check=False,
        )
    finally:
        target.chmod(original_mode)
    assert finished.returncode != 0
    assert "the session database is read-only" in finished.stderr
    assert str(settings.sqlite_path) in finished.stderr
    assert "Traceback" not in finished.stderr
    async with open_store(settings) as store:
        assert without_ids(await store.get_session("faulty")) == [
            ChatTurn(role="user", content="before", timestamp=1)
        ]
