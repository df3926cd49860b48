"""The append on long sessions: it reads only the value's last 32 KiB, extends the value in
place, recognises retries among the newest turns, costs a fixed number of billed commands,
and keeps the script short whatever the stored value holds."""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

import pytest
import redis

from localservers.backends import ROW_BACKENDS
from localservers.raw import RawAccess, RedisRaw
from localservers.redis_server import RedisServer
from memory import (
    RETRY_WINDOW_BYTES,
    ChatTurn,
    CorruptSessionError,
    NewTurn,
    SessionStore,
    StoreConfig,
    open_store,
)
from memory.redis_store import append_script
from memory.rules import encode_session
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio

WINDOW = RETRY_WINDOW_BYTES  # the bytes of a value's end that a save reads
MiB = 1024 * 1024


@pytest.fixture
def store_config(backend: str, make_settings: SettingsFactory) -> StoreConfig:
    return make_settings(backend, max_session_bytes=16 * MiB)


def filler(count: int, size: int = 500) -> list[ChatTurn]:
    """`count` turns of about `size` bytes each, as another writer might have stored them."""
    return [
        ChatTurn(
            role="user" if i % 2 == 0 else "assistant",
            content=f"{i} " + "é" * (size // 4) + "m" * (size // 2),
            timestamp=1_700_000_000_000 + i,
        )
        for i in range(count)
    ]


def turn(content: str, timestamp: int | None = 1_800_000_000_000) -> NewTurn:
    return NewTurn(role="user", content=content, timestamp=timestamp)


async def test_a_retry_after_50_turns_of_a_5000_turn_session_stores_nothing(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    key = f"{key_prefix}session:s1"
    raw.set(key, encode_session(filler(5000)))
    first = await store.save_turn("s1", turn("the question", 1_800_000_000_000))
    assert first.stored
    await store.save_turns("s1", [turn(f"then {i}", 1_800_000_000_001 + i) for i in range(50)])
    before = raw.get(key)

    again = await store.save_turn("s1", turn("the question", 1_800_000_000_000))

    assert (again.stored, again.timestamp, again.new_session) == (False, first.timestamp, False)
    assert raw.get(key) == before
    turns = await store.get_session("s1")
    assert len(turns) == 5051
    assert [t.content for t in turns].count("the question") == 1


async def test_a_long_session_is_extended_without_rewriting_a_byte_before_its_end(
    store: SessionStore, raw: RawAccess, key_prefix: str, backend: str
) -> None:
    key = f"{key_prefix}session:s1"
    value = encode_session(filler(300))
    raw.set(key, value)
    result = await store.save_turns("s1", [turn("a", 1), turn("b", 2)], "ab")
    assert [t.stored for t in result.turns] == [True, True]
    if backend not in ROW_BACKENDS:
        added = (
            ',{"role":"user","content":"a","timestamp":1,"id":"ab#0"}'
            ',{"role":"user","content":"b","timestamp":2,"id":"ab#1"}]'
        )
        assert raw.get(key) == (value[:-1] + added).encode()
    assert [t.content for t in (await store.get_session("s1"))[-2:]] == ["a", "b"]


@pytest.mark.parametrize(
    "content",
    [
        "".join(chr(0x4E00 + i % 5000) for i in range(100_000)),  # 300 KB of CJK
        '"' * 100_000,  # every character escaped
        "\n" * 50_000 + "\\" * 50_000,
        "\x01" * 20_000 + "x" * 80_000,  # 20,000 control characters, 120 KB of \u0001
        '{"role":"user","content":"x","timestamp":1},' * 2000,  # JSON quoted in a message
    ],
    ids=["cjk", "quotes", "escapes", "controls", "quoted-json"],
)
async def test_a_last_turn_longer_than_the_window_is_appended_after(
    store: SessionStore, content: str
) -> None:
    await store.save_turns("s1", [turn("before", 1), turn(content, 2)])
    assert (await store.save_turn("s1", turn("after", 3))).stored
    assert [t.content for t in await store.get_session("s1")] == ["before", content, "after"]


# -- billed commands -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis", "upstash"])
@pytest.mark.parametrize(("stored_turns", "billed"), [(10, [3, 3, 3, 3]), (5000, [5, 4, 5, 5])])
async def test_a_save_is_three_billed_commands_below_the_window_and_at_most_five_above(
    backend: str,
    make_settings: SettingsFactory,
    redis_raw: RedisRaw,
    key_prefix: str,
    stored_turns: int,
    billed: list[int],
) -> None:
    redis_raw.set(f"{key_prefix}session:s1", encode_session(filler(stored_turns)))
    # The append's own commands; keeping the session index adds one ZADD to each.
    async with open_store(make_settings(backend, max_session_bytes=16 * MiB, session_index=False)) as store:
        await store.save_turn("warm", turn("up"))
        counted = []
        for save in (
            functools.partial(store.save_turn, "s1", turn("new", 1)),
            functools.partial(store.save_turn, "s1", turn("new", 1)),  # a retry: no write, EXPIRE
            functools.partial(store.save_turns, "s1", [turn("q", 2), turn("a", 3)]),
            functools.partial(store.save_turn, "s1", turn("stamped by the server", None)),
        ):
            redis_raw.reset_billing()
            await save()
            counted.append(redis_raw.billed_commands())
        assert counted == billed


@pytest.mark.parametrize("backend", ["redis", "upstash"])
async def test_a_last_turn_longer_than_the_window_costs_one_command_more(
    backend: str, make_settings: SettingsFactory, redis_raw: RedisRaw
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=16 * MiB)) as store:
        await store.save_turns("s1", [turn("before", 1), turn("x" * 100_000, 2)])
        redis_raw.reset_billing()
        assert (await store.save_turn("s1", turn("after", 3))).stored
        # EVALSHA, GETRANGE of 32 KiB, STRLEN, GETRANGE of 256 KiB, SETRANGE, EXPIRE, the index's ZADD
        assert redis_raw.billed_commands() == 7


# -- the script's time ---------------------------------------------------------------------------


def crafted_values() -> dict[str, str]:
    """1 MiB values built to make the append's check as long as possible."""
    return {
        # A repeated key's earlier value: an array of half a million numbers to parse.
        "junk-array": '[{"role":"user","content":"x","timestamp":1,"role":['
        + "1," * (MiB // 2)
        + '1],"role":"user"}]',
        # A candidate for the last turn's start every 8 bytes, each failing.
        "candidates": "[" + '{"a":1},' * (MiB // 8) + '{"role":"user"}]',
        # Arrays nested under repeated keys, as deep as the value allows.
        "nesting": '[{"role":' + '[{"role":' * (MiB // 10) + "1" + "}]" * (MiB // 10) + "}]",
        # A last turn of escapes only, larger than any this server writes.
        "escapes": '[{"role":"user","content":"' + "\\n" * (MiB // 2) + '","timestamp":1}]',
        "unicode-escapes": '[{"role":"user","content":"' + "\\u0001" * (MiB // 6) + '","timestamp":1}]',
        "escaped-quotes": '[{"role":"user","content":"' + '\\"' * (MiB // 2) + '","timestamp":1}]',
        # Runs the scanner reads a byte at a time in a pattern.
        "spaces": "[" + " " * MiB + "]",
        "digits": '[{"role":"user","content":"x","timestamp":' + "1" * MiB + "}]",
        "backslashes": '[{"role":"user","content":"' + "\\" * MiB + '","timestamp":1}]',
        "braces": "[" + ",{" * (MiB // 2) + "}]",
    }


def cpu_ms(pid: int) -> float:
    """The time the server's main thread (where scripts run) has spent on a CPU, in ms: unlike
    the wall clock, it does not grow while other processes have the CPU."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e6


@pytest.mark.parametrize("name", list(crafted_values()))
async def test_no_stored_value_keeps_the_script_busy(
    name: str, make_settings: SettingsFactory, redis_raw: RedisRaw, redis_server: RedisServer, key_prefix: str
) -> None:
    key = f"{key_prefix}session:s1"
    value = crafted_values()[name]
    redis_raw.set(key, value)
    async with open_store(make_settings("redis", max_session_bytes=16 * MiB)) as store:
        await store.save_turn("warm", turn("up"))  # the script is cached: EVALSHA alone is timed
        before = cpu_ms(redis_server.pid)
        refused = False
        try:
            stored = (await store.save_turn("s1", turn("new", 5))).stored
        except CorruptSessionError:
            stored, refused = False, True
        milliseconds = cpu_ms(redis_server.pid) - before
        if refused:
            assert redis_raw.get(key) == value.encode(), "a refused save changed the value"
    # The CPU Valkey spent on the save (the script and its commands, and the reply); the bound
    # is generous, the figures are a few milliseconds.
    assert milliseconds < 50, f"{name}: {milliseconds:.1f} ms of CPU (stored: {stored})"


# -- what the script answers -------------------------------------------------------------------


def test_an_equal_turn_counts_as_the_sessions_first_only_when_the_head_was_read(
    redis_raw: RedisRaw, key_prefix: str
) -> None:
    script = append_script(key_locking=False)
    client: redis.Redis = redis_raw.client
    first = '{"role":"user","content":"first","timestamp":1}'

    def states(value: str) -> list[int]:
        key = f"{key_prefix}session:{len(value)}"
        client.set(key, value)
        args = [
            "60",
            str(16 * MiB),
            "0",
            "s",
            "",
            "0",
            "refuse",
            '{"role":"user","content":"first","timestamp":',
            "1",
            "keep",
            "a1",
        ]
        reply = client.eval(script.source, 2, key, key + ":deleted", *args)
        return [int(state) for state in reply[4::2]]  # after outcome, created, dropped and the timestamp

    short = "[" + first + "]"
    assert states(short) == [2]
    # The first turn again, near the end of a long session: an equal turn, not the first.
    long_session = encode_session(filler(200))[:-1] + "," + first + "]"
    assert len(long_session.encode()) > WINDOW
    assert states(long_session) == [0]


def test_the_retry_window_the_server_states_is_the_one_the_script_reads() -> None:
    """Tool descriptions and docs quote RETRY_WINDOW_BYTES; the script must read exactly that much."""
    source = resources.files("memory").joinpath("append_turns.lua").read_text(encoding="utf-8")
    match = re.search(r"^local WINDOW = (\d+)", source, flags=re.MULTILINE)
    assert match is not None, "the script no longer names its window WINDOW"
    assert int(match[1]) == RETRY_WINDOW_BYTES


@pytest.mark.parametrize("backend", ["redis", "upstash"])
async def test_a_retry_with_an_id_is_found_beyond_the_window_for_one_command_more(
    backend: str, make_settings: SettingsFactory, redis_raw: RedisRaw
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=16 * MiB, session_index=False)) as store:
        first = await store.save_turn("s1", NewTurn(role="user", content="the question", id="msg-1"))
        await store.save_turns("s1", filler(100))  # about 55 KB after it: past the window
        redis_raw.reset_billing()
        again = await store.save_turn("s1", NewTurn(role="user", content="the question", id="msg-1"))
        assert (again.stored, again.timestamp) == (False, first.timestamp)
        # EVALSHA, GETRANGE of the window, STRLEN, GETRANGE of what lies before it, EXPIRE
        assert redis_raw.billed_commands() == 5
        redis_raw.reset_billing()
        fresh = await store.save_turn("s1", NewTurn(role="user", content="the question"))
        assert fresh.stored  # an id the server made is new: nothing more is read
        assert redis_raw.billed_commands() == 5  # EVALSHA, GETRANGE, STRLEN, SETRANGE, EXPIRE
        assert [t.content for t in await store.get_session("s1")].count("the question") == 2
