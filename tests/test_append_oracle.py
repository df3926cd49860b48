"""The append and the reads of every backend against an independent reader with JSON.parse's semantics.

Generated values in the layouts other writers produce (spaced, reordered, repeated keys,
every escape, surrogates, integral numbers written as `1e3` or `1.0`) and broken ones.
A save must never refuse a session or touch a byte of what it cannot read; a read must
return exactly what JSON.parse and the turn schema give, or say the value is corrupt.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localservers.backends import BACKENDS, ROW_BACKENDS, backend_fields
from localservers.gateway import UpstashGateway
from localservers.raw import ClusterRaw, PostgresRaw, RawAccess, RedisRaw, SQLiteRaw
from localservers.redis_server import RedisServer
from memory import (
    ChatTurn,
    CorruptSessionError,
    NewTurn,
    SessionStore,
    StoreConfig,
    open_store,
)
from memory.postgres_store import PostgresStore
from tests.support.json_values import (
    NEW_CONTENT,
    ROLES,
    WHITESPACE,
    StoredTurn,
    Turn,
    oracle,
    stored_values,
    stringify,
)

# CI runs a fixed corpus; ORACLE_EXAMPLES and ORACLE_RANDOM=1 explore further by hand.
EXAMPLES = int(os.environ.get("ORACLE_EXAMPLES", "300"))
# The bytes the append reads from a value's end: a longer value is extended in place, and
# equal turns are looked for in its last WINDOW bytes (or in its last turn, if longer).
WINDOW = 32768
RANDOM = os.environ.get("ORACLE_RANDOM") == "1"
PREFIX = "oracle:"
_ids = itertools.count()


@dataclass
class Backend:
    name: str
    store: SessionStore
    raw: RawAccess
    portal: BlockingPortal


@pytest.fixture(scope="module", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    gateway_server: UpstashGateway,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Backend]:
    name: str = request.param
    path: Path = tmp_path_factory.mktemp("oracle") / "sessions.sqlite3"
    postgres = request.getfixturevalue("postgres_server") if name == "postgres" else None
    cluster = request.getfixturevalue("redis_cluster") if name == "cluster" else None
    fields = backend_fields(
        name, redis=redis_server, gateway=gateway_server, sqlite_path=path, postgres=postgres, cluster=cluster
    )
    raw: RawAccess
    if name == "sqlite":
        raw = SQLiteRaw(path)
    elif postgres is not None:
        raw = PostgresRaw(postgres.url)
    elif cluster is not None:
        raw = ClusterRaw(cluster.ports[0])
    else:
        raw = RedisRaw(redis_server.port)
    with start_blocking_portal() as portal:
        store = portal.call(open_store, StoreConfig(**fields, key_prefix=PREFIX))
        # The pool at its size before the first example: PostgreSQL's pool draws from `random`
        # as it connects (in its own task), which Hypothesis takes for a strategy using it. The
        # first save starts a purge beside it, which takes a second connection.
        portal.call(store.check)
        portal.call(store.save_turn, "warm-up", NewTurn(role="user", content="warm-up"))
        if isinstance(store, PostgresStore):
            portal.call(store.purge_finished)
        yield Backend(name, store, raw, portal)
        portal.call(store.aclose)
        raw.close()


def as_turns(turns: list[StoredTurn]) -> list[ChatTurn]:
    return [
        ChatTurn(role=role, content=content, timestamp=ts, id=turn_id)  # type: ignore[arg-type]
        for role, content, ts, turn_id in turns
    ]


def read(backend: Backend, session_id: str, last: int | None = None) -> list[ChatTurn] | CorruptSessionError:
    try:
        return backend.portal.call(lambda: backend.store.get_session(session_id, last))
    except CorruptSessionError as exc:
        return exc


@st.composite
def new_turns(draw: st.DrawFn, existing: list[StoredTurn] | None) -> NewTurn:
    """A turn to save: often equal to a stored one (a retry, or equal text without a timestamp)."""
    if existing and draw(st.booleans()):
        role, content, timestamp, _ = draw(st.sampled_from(existing))
        if "\ufffd" not in content or draw(st.booleans()):
            return NewTurn(role=role, content=content, timestamp=draw(st.sampled_from([timestamp, None])))  # type: ignore[arg-type]
    return NewTurn(
        role=draw(st.sampled_from(ROLES)),
        content=draw(NEW_CONTENT),
        timestamp=draw(st.one_of(st.none(), st.integers(0, 2**53 - 1))),
    )


# Long values: a long run of turns, JSON.stringify's layout, in multibyte text, so that the
# window's edge falls inside a turn and often inside a character, ahead of a generated
# value. Built once and shifted by a drawn padding, so that each example is cheap.
_MULTIBYTE = "é€😀 ab"
_LONG_RUN = ",".join(
    stringify(("user" if i % 2 else "assistant", (_MULTIBYTE * 30)[: 60 + i % 97], 1_700_000_000_000 + i))
    for i in range(420)
)
# Characters that make a long turn costly to check: quotes, backslashes, controls.
_HEAVY = '"\\\n\x01é😀{[,:a'


@st.composite
def long_values(draw: st.DrawFn) -> str:
    """A value longer than the window: valid or broken, before or inside the window, and
    sometimes ending with a turn longer than the window."""
    rnd = random.Random(draw(st.integers(0, 2**32)))  # a long text from one draw, not thousands
    tail = draw(stored_values())
    padding = stringify(("user", "p" * draw(st.integers(0, 700)), 1))
    run = _LONG_RUN + "," + padding
    if draw(st.integers(0, 2)) == 0:  # a last turn longer than the window
        content = "".join(rnd.choice(_HEAVY) for _ in range(draw(st.integers(16_000, 24_000))))
        big = json.dumps(
            {"role": "user", "content": content, "timestamp": 5},
            ensure_ascii=draw(st.booleans()),
            separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
        )
        run += "," + big
    if draw(st.integers(0, 5)) == 0:  # corrupt in the middle, or before the window
        at = draw(st.integers(0, len(run) - 1))
        run = run[:at] + draw(st.sampled_from(['"', "{", "]", "\\", ""])) + run[at + 1 :]
    start = tail.find("[")
    if start < 0:  # not an array: the run goes ahead of it
        return "[" + run + "," + tail
    rest = tail[start + 1 :]
    separator = "" if rest.lstrip(WHITESPACE).startswith("]") else ","
    return tail[: start + 1] + run + separator + rest


CORPUS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LONG_CORPUS = settings(CORPUS, max_examples=max(1, EXAMPLES // 6))


@CORPUS
@given(data=st.data(), value=stored_values())
def test_reads_and_saves_agree_with_json_parse(backend: Backend, data: st.DataObject, value: str) -> None:
    check_against_the_oracle(backend, data, value)


@LONG_CORPUS
@given(data=st.data(), value=long_values())
def test_values_longer_than_the_window_agree_with_json_parse(
    backend: Backend, data: st.DataObject, value: str
) -> None:
    check_against_the_oracle(backend, data, value)


def check_against_the_oracle(backend: Backend, data: st.DataObject, value: str) -> None:
    session_id = f"s{next(_ids)}"
    key = f"{PREFIX}session:{session_id}"
    expected = oracle(value)
    backend.raw.set(key, value)

    whole = read(backend, session_id)
    if expected is None:
        assert isinstance(whole, CorruptSessionError), f"read a value JSON.parse refuses: {value!r}"
    else:
        assert whole == as_turns(expected), f"read differs from JSON.parse for {value!r}"
        for last in {1, 2, max(1, len(expected))}:
            assert read(backend, session_id, last) == as_turns(expected)[-last:], (value, last)

    turn = data.draw(new_turns(expected))
    before = backend.raw.get(key)
    try:
        result = backend.portal.call(lambda: backend.store.save_turn(session_id, turn))
    except CorruptSessionError:
        assert expected is None, f"refused to append to a session JSON.parse reads: {value!r}"
        assert backend.raw.get(key) == before, "a refused save changed the value"
        return

    saved: Turn = (turn.role, turn.content, result.timestamp)
    text = stringify(saved, result.id)
    if turn.timestamp is not None:
        assert result.timestamp == turn.timestamp
        # With a timestamp, an equal turn (whatever its id) in JSON.stringify's layout makes this
        # a retry, when it lies among the value's newest WINDOW bytes. A longer value may hold
        # older equal turns, which the save does not read.
        if backend.name in ROW_BACKENDS or holds_equal_turn(newest_bytes(value), saved):
            assert result.stored is not holds_equal_turn(value, saved), (value, turn)
        elif not holds_equal_turn(value, saved):
            assert result.stored is True, (value, turn)
    else:
        assert result.stored, "a turn without a timestamp was merged with another"
        assert not holds_equal_turn(newest_bytes(value), saved), (
            "the server's stamp collides with an equal turn"
        )
    assert result.new_session is False

    if expected is None:
        # Corrupt before its last turn: appended after it, without touching a byte of it
        # (or, for a retry of a turn it holds, not touched at all).
        assert backend.name not in ROW_BACKENDS, "a row store appended to a value it cannot read"
        if result.stored:
            assert backend.raw.get(key) == appended(value, "," + text)
        else:  # a retry of a turn the value already holds: nothing to append
            assert backend.raw.get(key) == before
        assert isinstance(read(backend, session_id), CorruptSessionError)
        return
    after = [*expected, (*saved, result.id)] if result.stored else expected
    assert read(backend, session_id) == as_turns(after)
    if backend.name not in ROW_BACKENDS and result.stored:
        separator = "," if expected else ""
        assert backend.raw.get(key) == appended(value, separator + text)


def holds_equal_turn(value: str, turn: Turn) -> bool:
    """Whether `value` holds `turn` as JSON.stringify writes it, with or without an id."""
    head = stringify(turn)[:-1]
    return head + "}" in value or head + ',"id":' in value


def newest_bytes(value: str) -> str:
    """The part of `value` a save always searches for equal turns: its last WINDOW bytes."""
    return value.encode()[-WINDOW:].decode("utf-8", "ignore")


def appended(value: str, text: str) -> bytes:
    """`value` with `text` and a closing bracket written over its closing bracket.

    A value shorter than WINDOW bytes is rewritten whole, without its trailing spaces; a
    longer one is extended in place, so the trailing spaces the new text does not cover stay.
    """
    stored = value.encode()
    head = value.rstrip(WHITESPACE)[:-1].encode()
    new = (text + "]").encode()
    if len(stored) < WINDOW:
        return head + new
    return head + new + stored[len(head) + len(new) :]


def test_the_corpus_holds_every_kind_of_value() -> None:
    """The generator is worth its name: valid and invalid values, and each layout, occur."""
    seen: dict[str, int] = {
        "valid": 0,
        "invalid": 0,
        "spaced": 0,
        "escaped": 0,
        "numbers": 0,
        "surrogates": 0,
    }

    @CORPUS
    @given(value=stored_values())
    def survey(value: str) -> None:
        seen["valid" if oracle(value) is not None else "invalid"] += 1
        seen["spaced"] += "\n" in value or ", " in value
        seen["escaped"] += "\\u00" in value
        seen["numbers"] += "e0" in value or ".0" in value
        seen["surrogates"] += "\\ud8" in value or "\\uD8" in value

    survey()
    assert all(count > EXAMPLES // 50 for count in seen.values()), seen


def test_the_long_corpus_holds_every_kind_of_long_value() -> None:
    """Long values are valid and broken, end with a turn longer than the window, and put
    the window's edge inside a multibyte character."""
    seen = {"valid": 0, "invalid": 0, "last turn longer than the window": 0, "edge inside a character": 0}

    @LONG_CORPUS
    @given(value=long_values())
    def survey(value: str) -> None:
        stored = value.encode()
        assert len(stored) > WINDOW
        seen["valid" if oracle(value) is not None else "invalid"] += 1
        seen["last turn longer than the window"] += len(stored) - stored.rfind(b'{"role"') > WINDOW
        seen["edge inside a character"] += 0x80 <= stored[-WINDOW] < 0xC0

    survey()
    assert all(count >= LONG_CORPUS.max_examples // 20 for count in seen.values()), seen
