"""`export` and `import`: sessions move SQLite -> Redis -> Upstash -> SQLite with every turn exact
and their expiry kept; importing again changes nothing; an existing session that differs is left
and named; a malformed line stops the import at its number, keeping what came before."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env
from localservers.raw import RedisRaw
from localservers.redis_server import RedisServer, free_port
from memory import (
    MAX_BATCH_TURNS,
    ChatTurn,
    InvalidRequestError,
    NewTurn,
    SessionStore,
    StoreUnavailableError,
    open_store,
)
from server.export_command import ExportTally, export, read_listed
from server.import_command import ImportTally, MalformedLineError, import_sessions, parse_line
from server.isolation import client_namespace
from server.settings import Settings
from tests.conftest import SettingsFactory, server_settings
from tests.test_reindex import design_note_value

pytestmark = pytest.mark.anyio

DAY_MS = 86_400_000
ALICE = client_namespace("alice")
UNICODE = 'Grüße aus 東京 🌸, e\u0301, a line\u2028separator, "quotes", back\\slash,\ttab\nand a newline'
# Turns as the TypeScript layer writes them: no id.
ID_LESS = [
    ChatTurn(role="user", content="Written by the TypeScript layer", timestamp=1_764_000_000_000),
    ChatTurn(role="assistant", content="So it has no ids.", timestamp=1_764_000_000_001),
]
Snapshot = dict[str, tuple[list[ChatTurn], int]]


def now_ms() -> int:
    return int(time.time() * 1000)


async def fill(store: SessionStore) -> None:
    """Sessions of every kind in the shared key space and in alice's."""
    await store.save_turns(
        "short", [NewTurn(role="user", content="Hi"), NewTurn(role="assistant", content="Hello!")], "call-1"
    )
    for start in range(0, 300, MAX_BATCH_TURNS):
        batch = [
            NewTurn(role="user" if i % 2 == 0 else "assistant", content=f"turn {i} " + "x" * (i % 7))
            for i in range(start, min(start + MAX_BATCH_TURNS, 300))
        ]
        await store.save_turns("long", batch)
    await store.save_turn("café-☕", NewTurn(role="user", content=UNICODE))
    assert await store.put_session("typescript", ID_LESS, now_ms() + 2 * DAY_MS) == "written"
    alice = store.view(ALICE)
    await alice.save_turn("short", NewTurn(role="user", content="Alice's own 'short'", id="alice-1"))


async def snapshot(store: SessionStore) -> Snapshot:
    """Every session of the key space: its turns and its expiry."""
    listed = (await store.list_sessions(100)).sessions
    return {s.session_id: (await store.get_session(s.session_id), s.expires_at) for s in listed}


def assert_same(moved: Snapshot, source: Snapshot) -> None:
    assert sorted(moved) == sorted(source)
    for session_id, (turns, expires_at) in source.items():
        assert moved[session_id][0] == turns, session_id  # role, content, timestamp and id
        assert abs(moved[session_id][1] - expires_at) <= 1000, session_id


async def export_bytes(settings: Settings, namespace: str = "", session_id: str | None = None) -> bytes:
    out = io.BytesIO()
    await export(settings, namespace, session_id, out, ExportTally())
    return out.getvalue()


async def import_bytes(settings: Settings, lines: bytes, namespace: str = "") -> ImportTally:
    tally = ImportTally()
    await import_sessions(settings, namespace, io.BytesIO(lines), tally)
    return tally


async def test_sessions_go_round_sqlite_redis_upstash_sqlite_exactly(
    make_settings: SettingsFactory, key_prefix: str, redis_raw: RedisRaw
) -> None:
    # Redis and Upstash are served by one Redis here: a prefix each keeps them apart.
    hops = [
        server_settings(make_settings, "sqlite"),
        server_settings(make_settings, "redis", key_prefix=f"{key_prefix}redis:"),
        server_settings(make_settings, "upstash", key_prefix=f"{key_prefix}upstash:"),
        server_settings(
            make_settings, "sqlite", sqlite_path=make_settings("sqlite").sqlite_path.with_name("back.db")
        ),
    ]
    async with open_store(hops[0].store_config()) as first:
        await fill(first)
        source = await snapshot(first), await snapshot(first.view(ALICE))
    assert len(source[0]["long"][0]) == 300
    assert [turn.id for turn in source[0]["typescript"][0]] == [None, None]

    for origin, target in itertools.pairwise(hops):
        for namespace in ("", ALICE):
            tally = await import_bytes(target, await export_bytes(origin, namespace), namespace)
            assert tally.counts["written"] == (4 if namespace == "" else 1)
            assert sum(tally.counts.values()) == tally.counts["written"]
        async with open_store(target.store_config()) as store:
            assert_same(await snapshot(store), source[0])
            assert_same(await snapshot(store.view(ALICE)), source[1])
    # The key's own time to live, not only the index's word for it.
    ttl_ms = redis_raw.ttl_ms(f"{key_prefix}redis:session:typescript")
    assert abs(ttl_ms - (source[0]["typescript"][1] - now_ms())) < 2000


async def test_an_export_line_holds_the_session_as_documented(make_settings: SettingsFactory) -> None:
    settings = server_settings(make_settings, "sqlite")
    async with open_store(settings.store_config()) as store:
        expires_at = now_ms() + DAY_MS
        await store.put_session("typescript", ID_LESS, expires_at)
        await store.save_turn("ours", NewTurn(role="user", content="é", id="save-1"))
    first, second = (await export_bytes(settings)).splitlines()
    line = json.loads(second)
    assert list(line) == ["session_id", "title", "updated_at", "expires_at", "turns"]
    assert (line["session_id"], line["title"], line["expires_at"]) == (
        "typescript",
        "Written by the TypeScript layer",
        expires_at,
    )
    assert line["turns"][0] == {
        "role": "user",
        "content": "Written by the TypeScript layer",
        "timestamp": 1_764_000_000_000,
    }
    assert json.loads(first)["turns"][0]["id"] == "save-1"
    assert "é".encode() in first  # UTF-8, not \u escapes


async def test_importing_twice_changes_nothing(make_settings: SettingsFactory, key_prefix: str) -> None:
    origin = server_settings(make_settings, "sqlite")
    target = server_settings(make_settings, "upstash")
    async with open_store(origin.store_config()) as store:
        await fill(store)
    lines = await export_bytes(origin)
    assert (await import_bytes(target, lines)).counts["written"] == 4
    before = await export_bytes(target)

    again = await import_bytes(target, lines)

    assert again.counts == {"written": 0, "unchanged": 4, "differs": 0, "expired": 0, "refused": 0}
    assert await export_bytes(target) == before


async def test_an_existing_session_that_differs_is_named_and_left(make_settings: SettingsFactory) -> None:
    origin = server_settings(make_settings, "sqlite")
    target = server_settings(make_settings, "redis")
    async with open_store(origin.store_config()) as store:
        await fill(store)
    async with open_store(target.store_config()) as store:
        await store.save_turn("short", NewTurn(role="user", content="already here"))

    tally = await import_bytes(target, await export_bytes(origin))

    assert (tally.counts["written"], tally.counts["differs"]) == (3, 1)
    (line_number, session_id), *_ = tally.differing
    assert session_id == "short"
    assert line_number in range(1, 5)
    async with open_store(target.store_config()) as store:
        assert [turn.content for turn in await store.get_session("short")] == ["already here"]


async def test_a_session_past_its_expiry_is_counted_and_not_written(make_settings: SettingsFactory) -> None:
    target = server_settings(make_settings, "sqlite")
    line = {
        "session_id": "old",
        "expires_at": now_ms() - 1,
        "turns": [ID_LESS[0].model_dump(exclude_none=True)],
    }

    tally = await import_bytes(target, json.dumps(line).encode())

    assert tally.counts["expired"] == 1
    async with open_store(target.store_config()) as store:
        assert await store.get_session("old") == []


async def test_a_session_the_store_cannot_hold_is_refused_and_the_rest_imported(
    make_settings: SettingsFactory,
) -> None:
    target = server_settings(make_settings, "redis", max_session_bytes=1024)
    big = {
        "session_id": "big",
        "expires_at": now_ms() + DAY_MS,
        "turns": [{"role": "user", "content": "x" * 2000, "timestamp": 1}],
    }
    small = {
        "session_id": "small",
        "expires_at": now_ms() + DAY_MS,
        "turns": [{"role": "user", "content": "x", "timestamp": 1}],
    }

    tally = await import_bytes(target, f"{json.dumps(big)}\n{json.dumps(small)}\n".encode())

    assert (tally.counts["refused"], tally.counts["written"]) == (1, 1)
    ((line_number, session_id, problem),) = tally.refused
    assert (line_number, session_id) == (1, "big")
    assert "it was not written" in problem


GOOD = {"session_id": "s{n}", "expires_at": 0, "turns": [{"role": "user", "content": "hi", "timestamp": 1}]}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"session_id": "x", "turns": [', "line 3: not valid JSON (EOF while parsing"),
        (b'{"session_id": "x", "turns": []}', "line 3: expires_at: Field required"),
        (
            b'{"session_id": "x", "expires_at": 1, "turns": [{"role": "system", "content": "c"}]}',
            "line 3: turns.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            b'{"session_id": "x", "expires": 1, "expires_at": 1, "turns": []}',
            "line 3: expires: not a field of an exported session or turn",
        ),
        (b'["not", "a", "session"]', "line 3: the line: Input should be an object"),
        (b'{"session_id": "\xff"}', "line 3: not UTF-8 text (byte 17)"),
    ],
)
async def test_a_malformed_line_stops_the_import_at_its_number_keeping_what_came_before(
    make_settings: SettingsFactory, line: bytes, problem: str
) -> None:
    target = server_settings(make_settings, "sqlite")
    good = [
        json.dumps({**GOOD, "session_id": f"s{n}", "expires_at": now_ms() + DAY_MS}).encode()
        for n in (1, 2, 4)
    ]
    tally = ImportTally()

    with pytest.raises(MalformedLineError) as raised:
        await import_sessions(target, "", io.BytesIO(b"\n".join([good[0], good[1], line, good[2]])), tally)

    assert str(raised.value).startswith(problem)
    assert tally.counts["written"] == 2
    async with open_store(target.store_config()) as store:
        assert [s.session_id for s in (await store.list_sessions()).sessions] == ["s2", "s1"]


async def test_blank_lines_and_a_byte_order_mark_are_accepted(make_settings: SettingsFactory) -> None:
    target = server_settings(make_settings, "sqlite")
    line = json.dumps({**GOOD, "session_id": "s1", "expires_at": now_ms() + DAY_MS}).encode()

    tally = await import_bytes(target, b"\xef\xbb\xbf" + line + b"\n\n  \n")

    assert tally.counts["written"] == 1


async def test_one_session_is_exported_by_its_id(make_settings: SettingsFactory) -> None:
    settings = server_settings(make_settings, "sqlite")
    async with open_store(settings.store_config()) as store:
        await fill(store)
    (line,) = (await export_bytes(settings, session_id="café-☕")).splitlines()
    assert json.loads(line)["turns"][0]["content"] == UNICODE
    (line,) = (await export_bytes(settings, ALICE, session_id="short")).splitlines()
    assert json.loads(line)["turns"][0]["content"] == "Alice's own 'short'"
    with pytest.raises(InvalidRequestError, match="there is no session 'nope'"):
        await export_bytes(settings, session_id="nope")


async def test_a_session_not_yet_indexed_asks_for_a_reindex(
    make_settings: SettingsFactory, redis_raw: RedisRaw, key_prefix: str
) -> None:
    settings = server_settings(make_settings, "redis")
    redis_raw.set(f"{key_prefix}session:ts-1", design_note_value("from the TypeScript layer"))
    assert await export_bytes(settings) == b""
    with pytest.raises(
        InvalidRequestError, match=r"not in the session index.*run `session-memory-mcp reindex` first"
    ):
        await export_bytes(settings, session_id="ts-1")


async def test_a_session_deleted_between_listing_and_reading_is_left_out(
    make_settings: SettingsFactory,
) -> None:
    async with open_store(make_settings("redis")) as store:
        await fill(store)
        listed = (await store.list_sessions()).sessions
        await store.delete_session("short")
        tally = ExportTally()

        read = await read_listed(store, listed, tally)

    exported = [session.session_id for session in read]
    assert exported == [s.session_id for s in listed if s.session_id != "short"]
    assert tally.unreadable == []


def run(*arguments: str, env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CONSOLE_SCRIPT, *arguments],
        env=env,
        input=stdin,
        capture_output=True,
        timeout=START_PATIENCE_SECONDS,
    )


def test_the_console_scripts_pipe_an_export_into_an_import(
    make_settings: SettingsFactory, redis_server: RedisServer, key_prefix: str, tmp_path: Path
) -> None:
    sqlite_env = child_env(SQLITE_PATH=str(tmp_path / "sessions.sqlite3"), KEY_PREFIX=key_prefix)
    redis_env = child_env(
        REDIS_URL=redis_server.url, KEY_PREFIX=key_prefix, SQLITE_PATH=str(tmp_path / "unused.db")
    )

    async def setup() -> None:
        async with open_store(make_settings("sqlite")) as store:
            await fill(store)
        async with open_store(make_settings("redis")) as store:
            await store.save_turn("short", NewTurn(role="user", content="already here"))

    anyio.run(setup)

    exported = run("export", env=sqlite_env)
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr.decode().strip().endswith("session-memory-mcp export: wrote 4 sessions")
    imported = run("import", env=redis_env, stdin=exported.stdout)
    assert imported.returncode == 1, imported.stderr
    lines = imported.stderr.decode().strip().splitlines()
    assert "session 'short' exists with other turns; left as it is" in lines[-2]
    assert lines[-1] == "session-memory-mcp import: 3 written, 0 unchanged, 1 differs, 0 expired, 0 refused"

    alice_file = tmp_path / "alice.jsonl"
    alice_file.write_bytes(run("export", "--client", "alice", env=sqlite_env).stdout)
    done = run("import", str(alice_file), "--client", "alice", env=redis_env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().strip().endswith("1 written, 0 unchanged, 0 differs, 0 expired, 0 refused")
    again = run("import", str(alice_file), "--client", "alice", env=redis_env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.decode().strip().endswith("0 written, 1 unchanged, 0 differs, 0 expired, 0 refused")


def test_the_console_script_names_a_malformed_line_and_fails(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path
) -> None:
    env = child_env(
        REDIS_URL=redis_server.url, KEY_PREFIX=key_prefix, SQLITE_PATH=str(tmp_path / "unused.db")
    )
    good = json.dumps({**GOOD, "session_id": "s1", "expires_at": now_ms() + DAY_MS})

    done = run("import", env=env, stdin=f"{good}\n{{oops\n".encode())

    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert lines[-2].startswith("session-memory-mcp import: line 2: not valid JSON")
    assert lines[-2].endswith("the import stopped there, the lines before it are imported as counted below")
    assert lines[-1] == "session-memory-mcp import: 1 written, 0 unchanged, 0 differs, 0 expired, 0 refused"


async def test_a_store_that_cannot_be_reached_stops_the_import_with_its_error(
    make_settings: SettingsFactory,
) -> None:
    target = server_settings(
        make_settings, "redis", redis_url=f"redis://127.0.0.1:{free_port()}", store_timeout_seconds=1.0
    )
    line = json.dumps({**GOOD, "session_id": "s1", "expires_at": now_ms() + DAY_MS}).encode()
    tally = ImportTally()

    with pytest.raises(StoreUnavailableError):
        await import_sessions(target, "", io.BytesIO(b"\n".join([line] * 20)), tally)

    assert sum(tally.counts.values()) == 0


def test_an_export_read_only_in_part_stops_without_a_traceback(
    make_settings: SettingsFactory, key_prefix: str, tmp_path: Path
) -> None:
    async def setup() -> None:
        async with open_store(make_settings("sqlite")) as store:
            turns = [ChatTurn(role="user", content="x" * 2000, timestamp=1)]
            for n in range(200):  # far more than a pipe holds
                await store.put_session(f"s{n}", turns, now_ms() + DAY_MS)

    anyio.run(setup)
    env = child_env(SQLITE_PATH=str(tmp_path / "sessions.sqlite3"), KEY_PREFIX=key_prefix)
    with subprocess.Popen(
        [CONSOLE_SCRIPT, "export"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert json.loads(process.stdout.readline())["turns"][0]["content"] == "x" * 2000
        process.stdout.close()  # as `| head -1` does
        stderr = process.stderr.read().decode()
        assert process.wait(START_PATIENCE_SECONDS) == 1
    assert "the output was closed before the export ended" in stderr
    assert "Traceback" not in stderr


def test_the_line_the_docs_show_is_one_import_reads() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "export.md").read_text()
    match = re.search(r"```json\n(.*?)\n```", page, flags=re.DOTALL)
    assert match is not None
    session = parse_line(match[1].encode(), first=True, number=1)
    assert session is not None
    assert [turn.id for turn in session.turns] == ["q3Ujx0sVb2Lk", None]


async def test_an_expiry_beyond_the_stores_ttl_is_kept_and_the_session_can_still_be_deleted(
    make_settings: SettingsFactory,
) -> None:
    target = server_settings(make_settings, "sqlite", session_ttl_seconds=3600)
    line = {
        "session_id": "s1",
        "expires_at": now_ms() + 2 * DAY_MS,
        "turns": [{"role": "user", "content": "c", "timestamp": 1}],
    }

    assert (await import_bytes(target, json.dumps(line).encode())).counts["written"] == 1

    async with open_store(target.store_config()) as store:
        (listed,) = (await store.list_sessions()).sessions
        assert abs(listed.expires_at - (now_ms() + 2 * DAY_MS)) < 5000
        assert listed.updated_at <= now_ms()  # dated no later than now, so a delete applies
        assert await store.delete_session("s1") is True
