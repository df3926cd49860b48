"""Concurrent saves to one session never lose, duplicate or reorder a writer's turns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from memory import ChatTurn, SessionStore, StoreConfig, open_store
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio

WRITERS = 50
TURNS_PER_WRITER = 20


def assert_every_turn_once_in_writer_order(turns: list[ChatTurn], writers: int, per_writer: int) -> None:
    contents = [t.content for t in turns]
    expected = {f"w{w}-t{i}" for w in range(writers) for i in range(per_writer)}
    assert len(contents) == len(expected), f"{len(contents)} turns stored, {len(expected)} sent"
    assert set(contents) == expected
    for w in range(writers):
        mine = [int(c.split("-t")[1]) for c in contents if c.startswith(f"w{w}-")]
        assert mine == list(range(per_writer)), f"writer {w}'s turns are out of order"


async def test_concurrent_writers_on_one_session_lose_nothing(
    backend: str, make_settings: SettingsFactory
) -> None:

    async def write(store: SessionStore, writer: int) -> None:
        for i in range(TURNS_PER_WRITER):
            turn = ChatTurn(role="user", content=f"w{writer}-t{i}", timestamp=1_700_000_000_000 + i)
            await store.save_turn("shared", turn)

    async with open_store(make_settings(backend, store_timeout_seconds=30)) as store:
        async with anyio.create_task_group() as group:
            for writer in range(WRITERS):
                group.start_soon(write, store, writer)
        assert_every_turn_once_in_writer_order(await store.get_session("shared"), WRITERS, TURNS_PER_WRITER)


WRITER_PROCESS = """
import asyncio, sys
from pathlib import Path
from memory import ChatTurn, StoreConfig, open_store

async def main(writer: int) -> None:
    settings = StoreConfig(
        upstash_redis_rest_url=None, upstash_redis_rest_token=None, redis_url=None,
        sqlite_path=Path(sys.argv[2]), store_timeout_seconds=30,
    )
    async with open_store(settings) as store:
        for i in range(int(sys.argv[3])):
            await store.save_turn("shared", ChatTurn(role="user", content=f"w{writer}-t{i}", timestamp=i))

asyncio.run(main(int(sys.argv[1])))
"""


async def test_sqlite_writers_in_separate_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    processes, per_process = 4, 50
    children = [
        subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, str(w), str(path), str(per_process)])
        for w in range(processes)
    ]
    for child in children:
        assert await anyio.to_thread.run_sync(child.wait) == 0
    settings = StoreConfig(
        upstash_redis_rest_url=None, upstash_redis_rest_token=None, redis_url=None, sqlite_path=path
    )
    async with open_store(settings) as store:
        assert_every_turn_once_in_writer_order(await store.get_session("shared"), processes, per_process)
