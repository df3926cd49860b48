"""The append and the reads of every backend against an independent reader with JSON.parse's semantics.

Generated values in the layouts other writers produce (spaced, reordered, repeated keys,
every escape, surrogates, integral numbers written as `1e3` or `1.0`) and broken ones.
A save must never refuse a session or touch a byte of what it cannot read; a read must
return exactly what JSON.parse and the turn schema give, or say the value is corrupt.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localservers.backends import backend_fields
from localservers.gateway import UpstashGateway
from localservers.raw import RawAccess, RedisRaw, SQLiteRaw
from localservers.redis_server import RedisServer
from memory import (
    ChatTurn,
    CorruptSessionError,
    NewTurn,
    SessionStore,
    StoreConfig,
    open_store,
)
from tests.support.json_values import NEW_CONTENT, ROLES, Turn, oracle, stored_values, stringify

# CI runs a fixed corpus; ORACLE_EXAMPLES and ORACLE_RANDOM=1 explore further by hand.
EXAMPLES = int(os.environ.get("ORACLE_EXAMPLES", "300"))
RANDOM = os.environ.get("ORACLE_RANDOM") == "1"
PREFIX = "oracle:"
_ids = itertools.count()


@dataclass
class Backend:
    name: str
    store: SessionStore
    raw: RawAccess
    portal: BlockingPortal


@pytest.fixture(scope="module", params=["sqlite", "redis", "upstash"])
def backend(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    gateway_server: UpstashGateway,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Backend]:
    name: str = request.param
    path: Path = tmp_path_factory.mktemp("oracle") / "sessions.sqlite3"
    fields = backend_fields(name, redis=redis_server, gateway=gateway_server, sqlite_path=path)
    with start_blocking_portal() as portal:
        store = portal.call(open_store, StoreConfig(**fields, key_prefix=PREFIX))
        raw: RawAccess = SQLiteRaw(path) if name == "sqlite" else RedisRaw(redis_server.port)
        yield Backend(name, store, raw, portal)
        portal.call(store.aclose)


def as_turns(turns: list[Turn]) -> list[ChatTurn]:
    return [ChatTurn(role=role, content=content, timestamp=ts) for role, content, ts in turns]  # type: ignore[arg-type]


def read(backend: Backend, session_id: str, last: int | None = None) -> list[ChatTurn] | CorruptSessionError:
    try:
        return backend.portal.call(lambda: backend.store.get_session(session_id, last))
    except CorruptSessionError as exc:
        return exc


@st.composite
def new_turns(draw: st.DrawFn, existing: list[Turn] | None) -> NewTurn:
    """A turn to save: often equal to a stored one (a retry, or equal text without a timestamp)."""
    if existing and draw(st.booleans()):
        role, content, timestamp = draw(st.sampled_from(existing))
        if "\ufffd" not in content or draw(st.booleans()):
            return NewTurn(role=role, content=content, timestamp=draw(st.sampled_from([timestamp, None])))  # type: ignore[arg-type]
    return NewTurn(
        role=draw(st.sampled_from(ROLES)),
        content=draw(NEW_CONTENT),
        timestamp=draw(st.one_of(st.none(), st.integers(0, 2**53 - 1))),
    )


CORPUS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@CORPUS
@given(data=st.data(), value=stored_values())
def test_reads_and_saves_agree_with_json_parse(backend: Backend, data: st.DataObject, value: str) -> None:
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
    if turn.timestamp is not None:
        assert result.timestamp == turn.timestamp
        # One identity rule: an equal turn in JSON.stringify's layout makes this a retry.
        assert result.stored is (stringify(saved) not in value), (value, turn)
    else:
        assert result.stored, "a turn without a timestamp was merged with another"
        assert stringify(saved) not in value, "the server's stamp collides with an equal turn"
    assert result.new_session is False

    if expected is None:
        # Corrupt before its last turn: appended after it, without touching a byte of it
        # (or, for a retry of a turn it holds, not touched at all).
        assert backend.name != "sqlite", "SQLite appended to a value it cannot read"
        if result.stored:
            head = value.rstrip(" \t\n\r")[:-1]
            assert backend.raw.get(key) == (head + "," + stringify(saved) + "]").encode()
        else:  # a retry of a turn the value already holds: nothing to append
            assert backend.raw.get(key) == before
        assert isinstance(read(backend, session_id), CorruptSessionError)
        return
    after = [*expected, saved] if result.stored else expected
    assert read(backend, session_id) == as_turns(after)
    if backend.name != "sqlite" and result.stored:
        head = value.rstrip(" \t\n\r")[:-1]
        separator = "," if expected else ""
        assert backend.raw.get(key) == (head + separator + stringify(saved) + "]").encode()


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
