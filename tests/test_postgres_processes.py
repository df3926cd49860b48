"""The console script on PostgreSQL: chosen by DATABASE_URL alone, and several server processes
writing one session at once without losing a turn."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from localservers.postgres_server import PostgresServer
from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env, http_server
from localservers.raw import PostgresRaw
from memory import StoreConfig, open_store
from tests.support.results import structured
from tests.test_concurrency import assert_every_turn_once_in_writer_order
from tests.test_server_processes import AUTH_TOKEN, http_client, save_and_read_back

pytestmark = pytest.mark.anyio

PROCESSES = 2
WRITERS_PER_PROCESS = 10
TURNS_PER_WRITER = 20


def only_postgres(server: PostgresServer, home: Path, key_prefix: str) -> dict[str, str]:
    """DATABASE_URL and nothing else of a store; a home of its own, where SQLite would go."""
    return child_env(
        DATABASE_URL=server.url,
        KEY_PREFIX=key_prefix,
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
    )


async def test_database_url_alone_stores_in_postgres_and_makes_no_sqlite_file(
    postgres_server: PostgresServer, tmp_path: Path, key_prefix: str
) -> None:
    parameters = StdioServerParameters(
        command=CONSOLE_SCRIPT, env=only_postgres(postgres_server, tmp_path, key_prefix)
    )
    async with Client(parameters) as client:
        await save_and_read_back(client, "pg-stdio")
    stored = PostgresRaw(postgres_server.url).get(f"{key_prefix}session:pg-stdio")
    assert stored is not None
    assert b'"content":"hej"' in stored
    assert sqlite_files(tmp_path) == []


def sqlite_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if "sqlite" in path.name]


def test_the_startup_line_names_postgres_without_the_password(
    postgres_server: PostgresServer, tmp_path: Path, key_prefix: str
) -> None:
    finished = subprocess.run(
        [CONSOLE_SCRIPT],
        env=only_postgres(postgres_server, tmp_path, key_prefix),
        input="",
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert f"store postgres (postgresql://127.0.0.1:{postgres_server.port}/postgres)" in finished.stderr
    assert postgres_server.password not in finished.stderr


def test_database_url_beside_redis_url_stops_the_server_naming_both(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    env = child_env(DATABASE_URL=postgres_server.url, REDIS_URL="redis://127.0.0.1:1/0", HOME=str(tmp_path))
    finished = subprocess.run(
        [CONSOLE_SCRIPT], env=env, capture_output=True, text=True, timeout=START_PATIENCE_SECONDS, check=False
    )
    assert finished.returncode != 0
    assert "both DATABASE_URL and REDIS_URL are set" in finished.stderr
    assert postgres_server.password not in finished.stderr


async def test_two_server_processes_with_ten_writers_each_lose_no_turn(
    postgres_server: PostgresServer, tmp_path: Path, key_prefix: str
) -> None:
    settings = dict(only_postgres(postgres_server, tmp_path, key_prefix), MCP_AUTH_TOKEN=AUTH_TOKEN)
    settings.pop("PATH"), settings.pop("HOME")  # http_server adds the base environment itself

    async def write(url: str, writer: int) -> None:
        async with http_client(url) as client:
            for index in range(TURNS_PER_WRITER):
                arguments = {
                    "session_id": "shared",
                    "role": "user",
                    "content": f"w{writer}-t{index}",
                    "timestamp": 1_700_000_000_000 + index,
                }
                structured(await client.call_tool("save_turn", arguments))

    with http_server(settings) as first, http_server(settings) as second:
        async with anyio.create_task_group() as group:
            for writer in range(PROCESSES * WRITERS_PER_PROCESS):
                group.start_soon(write, (first, second)[writer % PROCESSES], writer)
    config = StoreConfig(database_url=postgres_server.url, key_prefix=key_prefix)
    async with open_store(config) as store:
        turns = await store.get_session("shared")
    assert_every_turn_once_in_writer_order(turns, PROCESSES * WRITERS_PER_PROCESS, TURNS_PER_WRITER)


def test_a_wrong_password_stops_the_server_naming_database_url(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.url.replace(postgres_server.password, "wrong-password-5e1f")
    finished = subprocess.run(
        [CONSOLE_SCRIPT],
        env=child_env(DATABASE_URL=url, HOME=str(tmp_path)),
        input="",
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert finished.returncode != 0
    assert "rejected the credentials: check the user name and password in DATABASE_URL" in finished.stderr
    assert "wrong-password-5e1f" not in finished.stderr
