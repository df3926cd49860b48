"""`reindex`: sessions the index does not know (the TypeScript layer wrote them) become listed, on
Redis and Upstash; other keys are left alone; running it again changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env
from localservers.raw import RedisRaw
from localservers.redis_server import RedisServer
from memory import NewTurn, open_store
from memory.index import split_session_key, title_from_head
from memory.redis_store import RedisStore
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio

DAY_MS = 24 * 3600 * 1000


def design_note_value(*contents: str) -> str:
    """What the TypeScript layer's saveTurn writes: JSON.stringify of the turns."""
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": c, "timestamp": 1_732_540_000_000 + i}
        for i, c in enumerate(contents)
    ]
    return json.dumps(turns, ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("backend", ["redis", "upstash"])
async def test_sessions_the_typescript_layer_wrote_are_listed_after_a_reindex(
    backend: str, make_settings: SettingsFactory, redis_raw: RedisRaw, key_prefix: str
) -> None:
    async with open_store(make_settings(backend)) as store:
        assert isinstance(store, RedisStore)
        await store.save_turn("ours", NewTurn(role="user", content="saved by this server"))
        # Written by the TypeScript layer: a day into its 7-day TTL, and fresh.
        redis_raw.set(
            f"{key_prefix}session:older", design_note_value("Trip to Lisbon?", "Sure."), ttl_seconds=6 * 86400
        )
        redis_raw.set(f"{key_prefix}session:newer", design_note_value("Hej!"))
        redis_raw.set(f"{key_prefix}client:alice:session:hers", design_note_value("Alice's question"))
        redis_raw.set(f"{key_prefix}unrelated", "not ours")
        redis_raw.set(f"{key_prefix}session:not-json", "plain text")
        assert [s.session_id for s in (await store.list_sessions()).sessions] == ["ours"]

        indexed, seen, skipped = await store.reindex(page_size=2)
        assert skipped == []

        assert indexed == 4  # ours again (harmless), older, newer, hers
        assert seen >= 6
        page = (await store.list_sessions()).sessions
        assert [s.session_id for s in page] == ["newer", "ours", "older"]
        titles = {s.session_id: s.title for s in page}
        assert titles == {"newer": "Hej!", "ours": "saved by this server", "older": "Trip to Lisbon?"}
        older = page[2]
        now = time.time() * 1000
        assert now - DAY_MS - 60_000 < older.updated_at < now - DAY_MS + 60_000
        alice = (await store.view("client:alice:").list_sessions()).sessions
        assert [(s.session_id, s.title) for s in alice] == [("hers", "Alice's question")]
        # Again: the same order and titles (a last save read from a TTL may move by a millisecond).
        await store.reindex()
        again = (await store.list_sessions()).sessions
        assert [(s.session_id, s.title) for s in again] == [(s.session_id, s.title) for s in page]
        assert all(abs(a.updated_at - b.updated_at) < 1000 for a, b in zip(again, page, strict=True))


async def test_a_session_deleted_during_a_reindex_stays_out_of_the_index(
    make_settings: SettingsFactory, redis_raw: RedisRaw, key_prefix: str
) -> None:
    async with open_store(make_settings("redis")) as store:
        assert isinstance(store, RedisStore)
        key = f"{key_prefix}session:gone"
        redis_raw.set(key, design_note_value("soon deleted"))
        assert await store.delete_session("gone")
        # The reindex found the key before the delete; its indexing runs after it.
        assert await store._reindex_one(key, key_prefix, "gone") == 0
        assert (await store.list_sessions()).sessions == []


def test_keys_this_server_writes_are_told_from_the_others() -> None:
    assert split_session_key("p:session:abc", "p:") == ("p:", "abc")
    assert split_session_key("p:client:bob%3A1:session:x:y", "p:") == ("p:client:bob%3A1:", "x:y")
    assert split_session_key("p:session-index", "p:") is None
    assert split_session_key("{p:session:abc}:deleted", "p:") is None
    assert split_session_key("other:session:abc", "p:") is None
    assert split_session_key("p:session:", "p:") is None


def test_the_title_comes_from_the_complete_turns_of_the_head() -> None:
    head = (
        '[{"role":"assistant","content":"Hi"},{"role":"user","content":"Plan my   week\\nplease"},{"role":"us'
    )
    assert title_from_head(head) == "Plan my week please"
    assert title_from_head('[{"role":"user","content":"cut') is None


def test_the_console_script_reindexes_and_says_how_many(
    redis_server: RedisServer, redis_raw: RedisRaw, key_prefix: str, tmp_path: Path
) -> None:
    redis_raw.set(f"{key_prefix}session:ts-1", design_note_value("from the TypeScript layer"))
    env = child_env(
        REDIS_URL=redis_server.url, KEY_PREFIX=key_prefix, SQLITE_PATH=str(tmp_path / "unused.db")
    )
    done = subprocess.run(
        [CONSOLE_SCRIPT, "reindex"], env=env, capture_output=True, text=True, timeout=START_PATIENCE_SECONDS
    )
    assert done.returncode == 0, done.stderr
    # The keys it looked at may include the index it is filling.
    summary = r"session-memory-mcp reindex: indexed 1 session among \d keys under the key prefix"
    assert re.fullmatch(summary, done.stdout.strip()), done.stdout
    assert redis_raw.client.zrange(f"{key_prefix}session-index", 0, -1) == [b"ts-1"]


def test_the_console_script_on_sqlite_says_there_is_nothing_to_do(tmp_path: Path) -> None:
    env = child_env(SQLITE_PATH=str(tmp_path / "s.db"))
    done = subprocess.run(
        [CONSOLE_SCRIPT, "reindex"], env=env, capture_output=True, text=True, timeout=START_PATIENCE_SECONDS
    )
    assert done.returncode == 0, done.stderr
    assert "the SQLite store lists every session it holds; nothing to do" in done.stdout


async def test_keys_it_cannot_index_are_named_and_the_rest_indexed(
    make_settings: SettingsFactory, redis_raw: RedisRaw, key_prefix: str
) -> None:
    async with open_store(make_settings("redis")) as store:
        assert isinstance(store, RedisStore)
        # What JSON.stringify writes for a broken emoji, another type at a session key, an id the
        # tools refuse, and a session without a TTL.
        redis_raw.set(
            f"{key_prefix}session:broken", '[{"role":"user","content":"a \\ud83d b","timestamp":1}]'
        )
        redis_raw.client.hset(f"{key_prefix}session:a-hash", "a", "b")
        redis_raw.set(f"{key_prefix}session:{'x' * 200}", design_note_value("too long an id"))
        redis_raw.client.set(f"{key_prefix}session:forever", design_note_value("no TTL"))
        indexed, _, skipped = await store.reindex(page_size=1)
        assert indexed == 2
        assert [reason.split(": ")[0] for reason in skipped] == [f"{key_prefix}session:a-hash"]
        listed = {s.session_id: s.title for s in (await store.list_sessions()).sessions}
        assert listed == {"broken": "a b", "forever": "no TTL"}
        first = {s.session_id: s.updated_at for s in (await store.list_sessions()).sessions}
        await store.reindex()  # again: a key without a TTL keeps the date it was given
        assert {s.session_id: s.updated_at for s in (await store.list_sessions()).sessions}[
            "forever"
        ] == first["forever"]
