"""The embedded SQLite store: default location, purging, locks held by other processes."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import anyio
import pytest

from memory import ChatTurn, StoreUnavailableError, open_store
from memory.config import default_sqlite_path
from tests.conftest import SettingsFactory
from tests.support.sqlite_lock import locked_by_another_process
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio

HI = ChatTurn(role="user", content="hi", timestamp=1)


def test_default_file_is_in_the_users_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_sqlite_path() == tmp_path / "session-memory-mcp" / "sessions.sqlite3"


async def test_missing_directories_are_created(make_settings: SettingsFactory, tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "sessions.sqlite3"
    async with open_store(make_settings("sqlite", sqlite_path=path)) as store:
        await store.save_turn("s1", HI)
    assert path.exists()


async def test_expired_sessions_are_purged_from_the_file(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings("sqlite")
    async with open_store(settings) as store:
        await store.save_turn("s1", HI)
    with contextlib.closing(sqlite3.connect(settings.sqlite_path, isolation_level=None)) as connection:
        connection.execute("UPDATE conversations SET expires_at = ?", (int(time.time() * 1000) - 1,))
    async with open_store(settings):
        pass  # opening purges what has expired
    with contextlib.closing(sqlite3.connect(settings.sqlite_path)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM conversations").fetchone() == (0,)
        assert connection.execute("SELECT COUNT(*) FROM turns").fetchone() == (0,)


async def test_database_locked_by_another_process_gives_a_clear_error_then_recovers(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings("sqlite", store_timeout_seconds=0.3)
    async with open_store(settings) as store:
        await store.save_turn("s1", HI)
        with (
            locked_by_another_process(settings.sqlite_path),
            pytest.raises(StoreUnavailableError, match="locked by another process; try again later"),
        ):
            await store.save_turn("s1", ChatTurn(role="assistant", content="blocked", timestamp=2))
        result = await store.save_turn("s1", ChatTurn(role="assistant", content="after", timestamp=3))
        assert result.stored
        assert [t.content for t in await store.get_session("s1")] == ["hi", "after"]


async def test_under_a_lock_held_elsewhere_reads_go_on_and_queued_saves_fail_together(
    make_settings: SettingsFactory,
) -> None:
    timeout = 0.5
    settings = make_settings("sqlite", store_timeout_seconds=timeout)
    async with open_store(settings) as store:
        await store.save_turn("s1", HI)
        failed_after: list[float] = []
        read_after: list[float] = []

        async def save(i: int) -> None:
            with pytest.raises(StoreUnavailableError, match="locked by another process; try again later"):
                await store.save_turn("s1", ChatTurn(role="user", content=f"q{i}", timestamp=10 + i))
            failed_after.append(anyio.current_time() - started)

        async def read() -> None:
            await anyio.sleep(timeout / 5)  # the saves are waiting now
            assert without_ids(await store.get_session("s1")) == [HI]
            read_after.append(anyio.current_time() - started)

        with locked_by_another_process(settings.sqlite_path):
            started = anyio.current_time()
            async with anyio.create_task_group() as group:
                for i in range(6):
                    group.start_soon(save, i)
                group.start_soon(read)
        # One deadline per call: all six fail within about one timeout, where waiting one
        # after another they took six; the read did not queue behind them.
        assert len(failed_after) == 6
        assert max(failed_after) < 3 * timeout
        assert read_after[0] < min(failed_after)
        assert (await store.save_turn("s1", ChatTurn(role="user", content="after", timestamp=99))).stored
