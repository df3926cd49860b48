"""The SQLite store's files are private whatever the umask, and its path never reaches a client."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import TextContent

from memory import ChatTurn, StoreConfig, open_store
from memory.sqlite_file import translate
from server.app import build_server
from server.settings import Settings
from tests.support.sqlite_lock import locked_by_another_process

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_database_is_private_with_its_wal_and_shm_files(tmp_path: Path, umask: int) -> None:
    database = tmp_path / "data" / "memory" / "sessions.sqlite3"
    async with open_store(StoreConfig(sqlite_path=database)) as store:
        await store.save_turn("s", ChatTurn(role="user", content="private", timestamp=1))
        assert mode(database.parent) == 0o700
        for name in ("sessions.sqlite3", "sessions.sqlite3-wal", "sessions.sqlite3-shm"):
            assert mode(database.parent / name) == 0o600, name


async def test_an_existing_database_open_to_others_gets_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "sessions.sqlite3"
    sqlite3.connect(database).close()
    database.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="memory.sqlite_file"):
        async with open_store(StoreConfig(sqlite_path=database)):
            pass
    assert f"{database} can be read by other users (mode 644)" in caplog.text
    assert mode(database) == 0o644, "an existing file's mode is the operator's to change"


@pytest.fixture
def private_directory(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    return tmp_path


async def test_a_private_database_gets_no_warning(
    private_directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="memory.sqlite_file"):
        for _ in range(2):  # created, then opened again
            async with open_store(StoreConfig(sqlite_path=private_directory / "sessions.sqlite3")):
                pass
    assert caplog.text == ""


@pytest.mark.parametrize(
    "reason",
    [
        "database is locked",
        "attempt to write a readonly database",
        "unable to open database file",
        "disk I/O error",
    ],
)
def test_sqlite_errors_name_the_session_database_not_its_file(reason: str) -> None:
    # `translate` is given no path, so no message can carry one; it still says which store failed.
    message = str(translate(sqlite3.OperationalError(reason)))
    assert "the session database" in message


async def test_a_tool_error_from_a_locked_database_carries_no_path(tmp_path: Path) -> None:
    settings = Settings(
        upstash_redis_rest_url=None,
        upstash_redis_rest_token=None,
        redis_url=None,
        sqlite_path=tmp_path / "sessions.sqlite3",
        store_timeout_seconds=0.3,
    )
    async with open_store(settings) as store, Client(build_server(store, settings)) as client:
        with locked_by_another_process(settings.sqlite_path):
            result = await client.call_tool("save_turn", {"session_id": "s", "role": "user", "content": "x"})
    assert result.is_error
    assert isinstance(result.content[0], TextContent)
    assert "locked by another process" in result.content[0].text
    assert str(tmp_path) not in result.content[0].text
