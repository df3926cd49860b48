"""The append and read rules, case by case, on every backend: identity, reads like JSON.parse,
a value corrupt in the middle, batches, and what a tail read costs."""

from __future__ import annotations

import functools

import anyio
import pytest

import memory.rules as planning
from localservers.backends import ROW_BACKENDS
from localservers.gateway import UpstashGateway
from localservers.raw import RawAccess, RedisRaw
from memory import (
    ChatTurn,
    CorruptSessionError,
    InvalidRequestError,
    NewTurn,
    SessionFullError,
    SessionStore,
    open_store,
)
from memory.redis_store import append_script, lua_script
from memory.rules import encode_session
from tests.conftest import SettingsFactory
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio


def turn(content: str, timestamp: int | None = 1_700_000_000_000, role: str = "user") -> NewTurn:
    return NewTurn(role=role, content=content, timestamp=timestamp)  # type: ignore[arg-type]


def stored(content: str, timestamp: int, role: str = "user") -> ChatTurn:
    return ChatTurn(role=role, content=content, timestamp=timestamp)  # type: ignore[arg-type]


# -- identity ---------------------------------------------------------------------------


@pytest.mark.parametrize("stored_turns", [0, 1000], ids=["new-session", "long-session"])
async def test_concurrent_equal_saves_without_a_timestamp_are_all_kept(
    store: SessionStore, raw: RawAccess, key_prefix: str, stored_turns: int
) -> None:
    if stored_turns:  # past the append's 32 KiB window: the session is extended in place
        filler = [stored("m" * 500, i) for i in range(stored_turns)]
        raw.set(f"{key_prefix}session:s1", encode_session(filler))
    results = []

    async def save() -> None:
        results.append(await store.save_turn("s1", turn("ok", None)))

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(save)
    turns = (await store.get_session("s1"))[stored_turns:]
    assert [t.content for t in turns] == ["ok"] * 100
    assert all(result.stored for result in results)
    assert sorted(t.timestamp for t in turns) == sorted(result.timestamp for result in results)
    assert len({t.timestamp for t in turns}) == 100


async def test_concurrent_retries_with_one_timestamp_keep_one_turn(store: SessionStore) -> None:
    results = []

    async def save() -> None:
        results.append(await store.save_turn("s1", turn("once", 42)))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(save)
    assert without_ids(await store.get_session("s1")) == [stored("once", 42)]
    assert sum(result.stored for result in results) == 1


async def test_the_servers_stamp_moves_past_an_equal_turn(
    store: SessionStore, raw: RawAccess, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process stamped the same text with the millisecond this one is about to use.
    future = 4_000_000_000_000
    raw.set(f"{key_prefix}session:s1", f'[{{"role":"user","content":"ok","timestamp":{future}}}]')
    first = await store.save_turn("s1", turn("ok", None))
    assert first.stored
    assert first.timestamp < future
    monkeypatch.setattr(planning, "server_stamp", lambda: future)
    moved = await store.save_turn("s1", turn("ok", None))
    assert (moved.stored, moved.timestamp) == (True, future + 1)
    assert [t.timestamp for t in await store.get_session("s1")] == [future, first.timestamp, future + 1]


async def test_the_result_gives_the_timestamp_used(store: SessionStore) -> None:
    given = await store.save_turn("s1", turn("mine", 123))
    stamped = await store.save_turn("s1", turn("server's", None))
    assert given.timestamp == 123
    assert [t.timestamp for t in await store.get_session("s1")] == [123, stamped.timestamp]


async def test_new_session_is_true_exactly_when_the_save_created_it(store: SessionStore) -> None:
    assert (await store.save_turn("chosen-by-client", turn("a", 1))).new_session is True
    assert (await store.save_turn("chosen-by-client", turn("b", 2))).new_session is False
    assert (await store.save_turn("chosen-by-client", turn("a", 1))).new_session is False
    await store.delete_session("chosen-by-client")
    assert (await store.save_turn("chosen-by-client", turn("c", 3))).new_session is True


async def test_an_equal_turn_in_another_layout_is_not_taken_for_a_retry(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    # Retries are recognised by the text JSON.stringify writes; a spaced copy is another writer's.
    raw.set(f"{key_prefix}session:s1", '[{"role": "user", "content": "hi", "timestamp": 5}]')
    result = await store.save_turn("s1", turn("hi", 5))
    assert result.stored is True
    assert without_ids(await store.get_session("s1")) == [stored("hi", 5), stored("hi", 5)]
    again = await store.save_turn("s1", turn("hi", 5))
    assert again.stored is False


# -- reads like JSON.parse ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('[{"role":"user","content":"\\ud800 broken","timestamp":1}]', [stored("\ufffd broken", 1)]),
        ('[{"role":"user","content":"\\ud83d\\ude00","timestamp":1}]', [stored("😀", 1)]),
        ('[{"role":"user","content":"x","timestamp":1e3}]', [stored("x", 1000)]),
        ('[{"role":"user","content":"x","timestamp":7.0}]', [stored("x", 7)]),
        ('[{"role":"user","content":"x","timestamp":-0}]', [stored("x", 0)]),
        ('[{"\\u0072ole":"\\u0075ser","content":"x","timestamp":1}]', [stored("x", 1)]),
        ('[{"role":5,"content":"x","timestamp":1,"role":"assistant"}]', [stored("x", 1, "assistant")]),
        ('[{"role":"user","content":"\\"","timestamp":0 }]', [stored('"', 0)]),
        # A byte order mark, which TextDecoder drops before JSON.parse reads.
        ('\ufeff[{"role":"user","content":"x","timestamp":1}]', [stored("x", 1)]),
    ],
)
async def test_values_json_parse_reads_are_read_and_appended_to(
    store: SessionStore, raw: RawAccess, key_prefix: str, value: str, expected: list[ChatTurn]
) -> None:
    raw.set(f"{key_prefix}session:s1", value)
    assert without_ids(await store.get_session("s1")) == expected
    assert without_ids(await store.get_session("s1", last=1)) == expected[-1:]
    assert (await store.save_turn("s1", turn("next", 9))).stored
    assert without_ids(await store.get_session("s1")) == [*expected, stored("next", 9)]


async def test_an_escaped_quote_that_swallows_the_rest_is_not_a_session(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    value = '[{"role":"user","content":"a\\","timestamp":1}]'
    raw.set(f"{key_prefix}session:s1", value)
    with pytest.raises(CorruptSessionError, match="not valid JSON at character"):
        await store.get_session("s1")
    with pytest.raises(CorruptSessionError, match="left unchanged"):
        await store.save_turn("s1", turn("new"))
    assert raw.get(f"{key_prefix}session:s1") == value.encode()


async def test_a_corrupt_session_is_reported_with_where_it_fails(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    raw.set(f"{key_prefix}session:s1", '[{"role":"user","content":"a","timestamp":1},{"role":"bot"}]')
    with pytest.raises(CorruptSessionError, match="turn 1 lacks"):
        await store.get_session("s1")


async def test_a_session_corrupt_in_the_middle_is_appended_after_untouched_on_redis_protocol_stores(
    backend: str, store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    key = f"{key_prefix}session:s1"
    value = (
        '[{"role":"user","content":"a","timestamp":1},{"role":"bot"},'
        '{"role":"user","content":"b","timestamp":2}]'
    )
    raw.set(key, value)
    with pytest.raises(CorruptSessionError, match="turn 1"):
        await store.get_session("s1")
    if backend in ROW_BACKENDS:
        # The row stores keep an unreadable value aside and never appends to it.
        with pytest.raises(CorruptSessionError, match="left unchanged"):
            await store.save_turn("s1", turn("c", 3))
        assert raw.get(key) == value.encode()
        return
    assert (await store.save_turn("s1", NewTurn(role="user", content="c", timestamp=3, id="c3"))).stored
    assert raw.get(key) == (value[:-1] + ',{"role":"user","content":"c","timestamp":3,"id":"c3"}]').encode()
    with pytest.raises(CorruptSessionError, match="turn 1"):
        await store.get_session("s1")


# -- tail reads ---------------------------------------------------------------------------


async def test_last_reads_the_newest_turns_whatever_their_size(store: SessionStore) -> None:
    sizes = [10, 5000, 3, 20000, 1, 700, 9000, 2]
    turns = [turn("€" * size + "x" * (i % 3), i) for i, size in enumerate(sizes)]
    await store.save_turns("s1", turns)
    expected = [stored(t.content, t.timestamp or 0) for t in turns]
    for last in range(1, len(turns) + 2):
        assert without_ids(await store.get_session("s1", last=last)) == expected[-last:]


async def test_a_missing_session_reads_as_empty_with_last(store: SessionStore) -> None:
    assert await store.get_session("never", last=5) == []


async def test_last_on_a_long_session_moves_about_as_many_bytes_as_a_short_session(
    make_settings: SettingsFactory, gateway: UpstashGateway, redis_raw: RedisRaw
) -> None:
    async with open_store(make_settings("upstash", max_session_bytes=8 * 1024 * 1024)) as store:
        content = "m" * 500
        for session, count in (("short", 20), ("long", 3000)):
            for start in range(0, count, 100):
                await store.save_turns(
                    session, [turn(content, i) for i in range(start, min(count, start + 100))]
                )
        moved = {}
        for session in ("short", "long"):
            gateway.records.clear()
            redis_raw.reset_billing()
            assert len(await store.get_session(session, last=20)) == 20
            assert len(gateway.records) == 1
            assert redis_raw.billed_commands() == 1
            moved[session] = gateway.records[0].response_bytes
        assert moved["long"] <= 2 * moved["short"], moved


# -- batches ------------------------------------------------------------------------------


async def test_a_batch_is_stored_in_order(store: SessionStore) -> None:
    result = await store.save_turns("s1", [turn("q", 1), turn("a", 2, "assistant"), turn("q2", None)])
    assert result.new_session
    assert [t.stored for t in result.turns] == [True, True, True]
    turns = await store.get_session("s1")
    assert [(t.role, t.content) for t in turns] == [("user", "q"), ("assistant", "a"), ("user", "q2")]
    assert turns[2].timestamp == result.turns[2].timestamp


async def test_a_batch_keeps_one_copy_of_a_turn_it_repeats_or_that_is_stored(store: SessionStore) -> None:
    await store.save_turn("s1", turn("q", 1))
    result = await store.save_turns("s1", [turn("q", 1), turn("a", 2), turn("a", 2)])
    assert [t.stored for t in result.turns] == [False, True, False]
    assert [t.content for t in await store.get_session("s1")] == ["q", "a"]


async def test_a_batch_past_the_size_limit_stores_nothing(
    backend: str, make_settings: SettingsFactory
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=1024)) as store:
        await store.save_turn("s1", turn("x" * 100, 0))
        with pytest.raises(SessionFullError, match="nothing was saved"):
            await store.save_turns("s1", [turn("y" * 400, 1), turn("z" * 600, 2)])
        assert [t.content for t in await store.get_session("s1")] == ["x" * 100]


@pytest.mark.parametrize("count", [0, 101])
async def test_an_empty_or_oversized_batch_is_refused(store: SessionStore, count: int) -> None:
    with pytest.raises(InvalidRequestError, match=r"no turns|maximum is 100"):
        await store.save_turns("s1", [turn(f"t{i}", i) for i in range(count)])


async def test_batches_racing_single_saves_lose_nothing_and_keep_each_writers_order(
    store: SessionStore,
) -> None:
    async def pairs(writer: int) -> None:
        for i in range(10):
            await store.save_turns(
                "s1", [turn(f"b{writer}-{i}-q", None), turn(f"b{writer}-{i}-a", None, "assistant")]
            )

    async def singles(writer: int) -> None:
        for i in range(20):
            await store.save_turn("s1", turn(f"s{writer}-{i}", None))

    async with anyio.create_task_group() as group:
        for writer in range(5):
            group.start_soon(pairs, writer)
            group.start_soon(singles, writer)
    contents = [t.content for t in await store.get_session("s1")]
    assert len(contents) == 5 * 20 + 5 * 20
    for writer in range(5):
        mine = [c for c in contents if c.startswith(f"b{writer}-")]
        assert mine == [f"b{writer}-{i}-{part}" for i in range(10) for part in ("q", "a")]
        assert [c for c in contents if c.startswith(f"s{writer}-")] == [f"s{writer}-{i}" for i in range(20)]


# -- the script as each store sends it -------------------------------------------------------


async def test_upstash_sends_the_script_with_key_locking_and_redis_without(
    make_settings: SettingsFactory, gateway: UpstashGateway, redis_raw: RedisRaw
) -> None:
    flagged, plain = append_script(key_locking=True), append_script(key_locking=False)
    assert flagged.source.startswith("#!lua flags=allow-key-locking\n")
    assert not plain.source.startswith("#!")
    redis_raw.client.script_flush()
    for backend in ("upstash", "redis"):
        async with open_store(make_settings(backend)) as store:
            assert (await store.save_turn("s1", turn(backend))).stored
    assert flagged.sha1 in gateway.key_locking_scripts
    # Every script Upstash got carries the flag (the delete's too, when another test deleted).
    assert gateway.key_locking_scripts <= {flagged.sha1, lua_script("delete_session.lua", True).sha1}
    # Redis got the plain script directly: Valkey would refuse the flag.
    assert redis_raw.client.script_exists(plain.sha1) == [True]


@pytest.mark.parametrize("backend", ["redis", "upstash"])
@pytest.mark.parametrize(
    ("indexed", "to_create", "to_save"), [(True, 6, 4), (False, 4, 3)], ids=["index", "no-index"]
)
async def test_a_save_is_three_billed_commands_and_one_more_to_keep_the_index(
    backend: str,
    make_settings: SettingsFactory,
    redis_raw: RedisRaw,
    indexed: bool,
    to_create: int,
    to_save: int,
) -> None:
    async with open_store(make_settings(backend, session_index=indexed)) as store:
        await store.save_turn("warm", turn("up"))
        for save, billed in (
            # Creating a session also reads its deletion marker (and gives the index its title).
            (functools.partial(store.save_turn, "s1", turn("new", 1)), to_create),
            (functools.partial(store.save_turn, "s1", turn("new", 1)), to_save),
            (functools.partial(store.save_turns, "s1", [turn("q", 2), turn("a", 3)]), to_save),
        ):
            redis_raw.reset_billing()
            await save()
            assert redis_raw.billed_commands() == billed


async def test_a_last_larger_than_any_session_reads_the_whole_session(store: SessionStore) -> None:
    await store.save_turns("s1", [turn("a", 1), turn("b", 2)])
    for last in (3, 10**9, 2**63, 2**80):
        assert [t.content for t in await store.get_session("s1", last=last)] == ["a", "b"]
    assert await store.get_session("never", last=2**63) == []


@pytest.mark.parametrize("backend", ["redis", "upstash"])
async def test_last_on_turns_quoting_json_reads_only_the_tail(
    backend: str, make_settings: SettingsFactory, redis_raw: RedisRaw
) -> None:
    # Messages full of ',{' and '[{' (JSON quoted in a message) must not send the read back to GET.
    async with open_store(make_settings(backend, max_session_bytes=4 * 1024 * 1024)) as store:
        quoted = '[{"a":1},{"b":[{"c":2}]}] x,{ [{ ,{"' * 8
        for start in range(0, 400, 100):
            await store.save_turns("s1", [turn(f"{i} {quoted}", i) for i in range(start, start + 100)])
        for last in range(1, 41):
            redis_raw.reset_billing()
            turns = await store.get_session("s1", last=last)
            assert [t.timestamp for t in turns] == list(range(400 - last, 400))
            stats = redis_raw.client.info("commandstats")
            assert "cmdstat_get" not in stats, f"last={last} fell back to reading the whole value"


@pytest.mark.parametrize("backend", ["redis", "upstash"])
async def test_last_costs_one_getrange_and_two_when_the_newest_turn_outgrows_the_window(
    backend: str, make_settings: SettingsFactory, redis_raw: RedisRaw
) -> None:
    async with open_store(make_settings(backend, max_session_bytes=4 * 1024 * 1024)) as store:
        await store.save_turns("s1", [turn("m" * 500, i) for i in range(100)])
        redis_raw.reset_billing()
        assert [t.timestamp for t in await store.get_session("s1", last=20)] == list(range(80, 100))
        assert redis_raw.billed_commands() == 1
        await store.save_turn("s1", turn("€" * 90_000, 100))  # 270 kB, far past any window
        for last in (1, 2, 20):
            redis_raw.reset_billing()
            turns = await store.get_session("s1", last=last)
            assert [t.timestamp for t in turns] == list(range(101 - last, 101))
            stats = redis_raw.client.info("commandstats")
            assert "cmdstat_get" not in stats, f"last={last} fell back to reading the whole value"
            assert redis_raw.billed_commands() <= 2
