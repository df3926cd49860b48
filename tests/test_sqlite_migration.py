"""SQLite files written by 0.1.0 (one JSON value per session) move to one row per turn at open:
atomically, without loss, and safely when the process is killed half-way."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from localservers.raw import SQLiteRaw
from memory import ChatTurn, CorruptSessionError, NewTurn, SessionStore, StoreConfig, StoreError, open_store
from memory.sqlite_file import LAYOUT_VERSION

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "sessions-0.1.0.sqlite3"
LEGACY_SCHEMA = (
    "CREATE TABLE sessions (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER NOT NULL);"
    "CREATE INDEX sessions_expires_at ON sessions (expires_at);"
)
FAR_FUTURE = 4_102_444_800_000
LAYOUT_2_FIXTURE = Path(__file__).parent / "fixtures" / "sessions-layout-2.sqlite3"
CURRENT_TABLES = {"conversations", "turns", "unreadable_sessions", "deleted_sessions", "secrets"}


def settings_for(path: Path) -> StoreConfig:
    return StoreConfig(
        upstash_redis_rest_url=None, upstash_redis_rest_token=None, redis_url=None, sqlite_path=path
    )


def layout(path: Path) -> tuple[int, set[str]]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return version, tables


@pytest.fixture
async def migrated(tmp_path: Path) -> AsyncIterator[SessionStore]:
    path = tmp_path / "sessions.sqlite3"
    shutil.copy(FIXTURE, path)
    assert layout(path) == (0, {"sessions"})
    async with open_store(settings_for(path)) as store:
        yield store


async def test_every_session_of_a_0_1_0_file_reads_the_same_after_migration(
    migrated: SessionStore, tmp_path: Path
) -> None:
    turns = await migrated.get_session("user-42")
    assert len(turns) == 12
    assert turns[0] == ChatTurn(role="user", content='message 0 héllo 👋 "q"\n', timestamp=1_732_540_000_000)
    assert turns[11].role == "assistant"
    assert await migrated.get_session("user-42", last=2) == turns[-2:]
    assert await migrated.get_session("dup") == [
        ChatTurn(role="user", content="ok", timestamp=5),
        ChatTurn(role="assistant", content="ok", timestamp=5),
    ]
    assert await migrated.get_session("empty-ish") == [ChatTurn(role="user", content="", timestamp=0)]
    assert (await migrated.get_session("Zm9v_YmFy-"))[0].content == '{"role":"user"} ,{ [ ] \\ \u2028 \x01'
    assert await migrated.get_session("spaced") == [ChatTurn(role="user", content="café", timestamp=5)]
    assert await migrated.get_session("empty") == []
    assert await migrated.get_session("expired") == []
    assert layout(tmp_path / "sessions.sqlite3") == (LAYOUT_VERSION, CURRENT_TABLES)


async def test_a_migrated_session_keeps_its_rules(migrated: SessionStore, tmp_path: Path) -> None:
    # Retries of turns 0.1.0 stored are still recognised; a spaced copy, as on Redis, is not.
    first = await migrated.save_turn(
        "user-42", NewTurn(role="user", content='message 0 héllo 👋 "q"\n', timestamp=1_732_540_000_000)
    )
    assert first.stored is False
    assert (await migrated.save_turn("spaced", NewTurn(role="user", content="café", timestamp=5))).stored
    assert (
        await migrated.save_turn("empty", NewTurn(role="user", content="x", timestamp=1))
    ).new_session is False
    assert (await migrated.save_turn("expired", NewTurn(role="user", content="x", timestamp=1))).new_session


async def test_an_unreadable_0_1_0_value_is_kept_byte_for_byte_and_reported(
    migrated: SessionStore, tmp_path: Path
) -> None:
    value = b'[{"role":"user","content":"ok","timestamp":1},{"role":"robot"'
    raw = SQLiteRaw(tmp_path / "sessions.sqlite3")
    assert raw.get("session:broken") == value
    with pytest.raises(CorruptSessionError, match="not valid JSON at character"):
        await migrated.get_session("broken")
    with pytest.raises(CorruptSessionError, match="left unchanged"):
        await migrated.save_turn("broken", NewTurn(role="user", content="x"))
    assert raw.get("session:broken") == value
    assert await migrated.delete_session("broken") is True


def write_legacy_file(path: Path, sessions: int, turns: int) -> dict[str, str]:
    values = {}
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.executescript(LEGACY_SCHEMA)
        connection.execute("BEGIN")
        for s in range(sessions):
            value = json.dumps(
                [
                    {
                        "role": "user" if t % 2 else "assistant",
                        "content": f"s{s} t{t} " + "x" * 80,
                        "timestamp": t,
                    }
                    for t in range(turns)
                ],
                separators=(",", ":"),
            )
            values[f"session:s{s}"] = value
            connection.execute("INSERT INTO sessions VALUES (?, ?, ?)", (f"session:s{s}", value, FAR_FUTURE))
        connection.execute("COMMIT")
    return values


OPEN_AND_CLOSE = """
import sys, anyio
from pathlib import Path
from memory import StoreConfig, open_store
async def main():
    settings = StoreConfig(upstash_redis_rest_url=None, upstash_redis_rest_token=None,
                             redis_url=None, sqlite_path=Path(sys.argv[1]))
    print("opening", flush=True)
    async with open_store(settings):
        pass
anyio.run(main)
"""


def open_in_a_process(path: Path, kill_after: float | None) -> float:
    """Open the store in a child process; kill it `kill_after` s into the open. The open's duration."""
    with subprocess.Popen(
        [sys.executable, "-c", OPEN_AND_CLOSE, str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"opening\n"
        started = time.monotonic()
        if kill_after is not None:
            time.sleep(kill_after)
            child.send_signal(signal.SIGKILL)
        child.wait(60)
        return time.monotonic() - started


async def test_a_migration_killed_half_way_leaves_the_file_whole_and_finishes_next_time(
    tmp_path: Path,
) -> None:
    original = tmp_path / "legacy.sqlite3"
    values = write_legacy_file(original, sessions=1500, turns=40)
    timed = tmp_path / "timed.sqlite3"
    shutil.copy(original, timed)
    duration = open_in_a_process(timed, kill_after=None)
    assert layout(timed)[0] == LAYOUT_VERSION

    interrupted = 0
    for fraction in (0.1, 0.3, 0.6, 0.9):
        path = tmp_path / f"killed-{fraction}.sqlite3"
        shutil.copy(original, path)
        open_in_a_process(path, kill_after=duration * fraction)
        version, tables = layout(path)
        if version == 0:
            interrupted += 1
            with contextlib.closing(sqlite3.connect(path)) as connection:
                rows = dict(connection.execute("SELECT key, value FROM sessions").fetchall())
            assert rows == values, "an interrupted migration changed the 0.1.0 data"
        else:
            assert version == LAYOUT_VERSION
            assert "sessions" not in tables
        async with open_store(settings_for(path)) as store:
            for key in ("session:s0", "session:s777", "session:s1499"):
                expected = [ChatTurn.model_validate(turn) for turn in json.loads(values[key])]
                assert await store.get_session(key.removeprefix("session:")) == expected
        assert layout(path) == (LAYOUT_VERSION, CURRENT_TABLES)
    assert interrupted >= 1, f"no kill landed inside the {duration:.2f} s migration"


async def test_0_1_0_values_that_are_blobs_or_not_utf8_migrate_without_stopping_the_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "legacy.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.executescript(LEGACY_SCHEMA)
        insert = "INSERT INTO sessions VALUES (?, CAST(? AS TEXT), ?)"
        # TEXT that is not UTF-8, a session stored as a BLOB, and a BLOB that is no session.
        not_utf8 = b'[{"role":"user","content":"caf\xe9 \xff","timestamp":1}]'
        connection.execute(insert, ("session:latin1", not_utf8, FAR_FUTURE))
        connection.execute("INSERT INTO sessions VALUES (?, ?, ?)", ("session:blob", b"[]", FAR_FUTURE))
        connection.execute("INSERT INTO sessions VALUES (?, ?, ?)", ("session:junk", b"\x00\xfe", FAR_FUTURE))
    async with open_store(settings_for(path)) as store:
        assert await store.get_session("latin1") == [
            ChatTurn(role="user", content="caf\ufffd \ufffd", timestamp=1)
        ]
        assert await store.get_session("blob") == []
        assert (await store.save_turn("blob", NewTurn(role="user", content="x", timestamp=1))).stored
        with pytest.raises(CorruptSessionError, match="not valid JSON at character 0"):
            await store.get_session("junk")
    assert SQLiteRaw(path).get("session:junk") == b"\x00\xfe"


# -- layout 2 (no turn ids, no deletion markers) -------------------------------------------


async def test_a_layout_2_file_gains_ids_and_deletion_markers_and_keeps_every_turn(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    shutil.copy(LAYOUT_2_FIXTURE, path)
    assert layout(path)[0] == 2
    async with open_store(settings_for(path)) as store:
        turns = await store.get_session("layout-2")
        assert [t.content for t in turns] == [f"turn {i} héllo 👋" for i in range(6)] + [
            "stamped by the server"
        ]
        assert [t.id for t in turns] == [None] * 7
        assert turns[1] == ChatTurn(role="assistant", content="turn 1 héllo 👋", timestamp=1_750_000_000_001)
        # Turns stored before ids are still recognised by their timestamp; new ones carry their id.
        repeat = await store.save_turn(
            "layout-2", NewTurn(role="user", content="turn 0 héllo 👋", timestamp=turns[0].timestamp)
        )
        assert repeat.stored is False
        added = await store.save_turn("layout-2", NewTurn(role="user", content="after the migration"))
        assert (await store.get_session("layout-2", last=1))[0].id == added.id
        # Migrated sessions are listed, dated by their expiry less the TTL, titled by their first user turn.
        listed = {s.session_id: s.title for s in (await store.list_sessions()).sessions}
        assert listed == {"layout-2": "turn 0 héllo 👋", "other": "ok"}
        assert await store.delete_session("other") is True
    assert layout(path) == (LAYOUT_VERSION, CURRENT_TABLES)


async def test_a_file_of_a_later_layout_is_refused_by_name_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    shutil.copy(LAYOUT_2_FIXTURE, path)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute(f"PRAGMA user_version = {LAYOUT_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"has layout {LAYOUT_VERSION + 1}, written by a later version"):
        await open_store(settings_for(path))
    assert path.read_bytes() == before
