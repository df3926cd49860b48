"""The embedded default backend: one SQLite file, no server and no account needed."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from memory.codec import decode_session
from memory.errors import CorruptSessionError, SessionMemoryError, StoreError, StoreUnavailableError
from memory.models import ChatTurn, SaveResult
from memory.rules import AppendOutcome, Limits, check_last, newest, now_ms, save_result

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON sessions (expires_at);
"""
_UPSERT = (
    "INSERT INTO sessions (key, value, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_SELECT_LIVE = "SELECT value FROM sessions WHERE key = ? AND expires_at > ?"
_PURGE_INTERVAL_MS = 60 * 60 * 1000


def append_to_value(
    current: str | None, encoded_turn: str, turn: ChatTurn, session_id: str, limits: Limits
) -> tuple[AppendOutcome, int, str | None]:
    """The append script's rules, in Python: (outcome, turn count, new value or None)."""
    if current is None:
        value = f"[{encoded_turn}]"
        if len(value.encode("utf-8")) > limits.max_session_bytes:
            return "session_full", 0, None
        return "stored", 1, value
    try:
        turns = decode_session(current, session_id)
    except CorruptSessionError:
        return "not_a_session", 0, None
    if turn in turns:
        return "duplicate", len(turns), None
    body = current.rstrip()[:-1]  # a valid session ends with ']'
    value = body + ("," if turns else "") + encoded_turn + "]"
    if len(value.encode("utf-8")) > limits.max_session_bytes:
        return "session_full", len(turns), None
    return "stored", len(turns) + 1, value


class SQLiteStore:
    """Sessions in a local SQLite file, atomic across threads and processes.

    One connection, used from one worker thread at a time, so the event loop
    never blocks; other processes are kept out by SQLite's own write lock
    (BEGIN IMMEDIATE), waited for up to the store timeout.
    """

    backend = "sqlite"

    def __init__(self, connection: sqlite3.Connection, path: Path, limits: Limits) -> None:
        self._connection = connection
        self._path = path
        self._limits = limits
        self._limiter = anyio.CapacityLimiter(1)
        self._next_purge_ms = 0

    @classmethod
    async def open(cls, path: Path, limits: Limits, timeout_seconds: float) -> SQLiteStore:
        connection = await anyio.to_thread.run_sync(_connect, path, timeout_seconds)
        store = cls(connection, path, limits)
        try:
            await store._run(store._purge_unless_locked)
        except BaseException:
            await store.aclose()
            raise
        return store

    @property
    def location(self) -> str:
        return str(self._path)

    async def get_session(self, session_id: str, last: int | None = None) -> list[ChatTurn]:
        key = self._limits.key_for(session_id)
        check_last(last)
        value = await self._run(self._read, key)
        return [] if value is None else newest(decode_session(value, session_id), last)

    async def save_turn(self, session_id: str, turn: ChatTurn) -> SaveResult:
        key = self._limits.key_for(session_id)
        encoded = self._limits.encode_new_turn(turn)
        outcome, count, expires_at = await self._run(self._append, key, encoded, turn, session_id)
        return save_result(outcome, count, session_id, self._limits, expires_at)

    async def delete_session(self, session_id: str) -> bool:
        key = self._limits.key_for(session_id)
        return await self._run(self._delete, key)

    async def check(self, timeout_seconds: float | None = None) -> None:
        """A trivial read; in WAL mode it never waits for another process's write lock."""
        await self._run(self._connection.execute, "SELECT 1 FROM sessions LIMIT 1")

    async def aclose(self) -> None:
        await self._run(self._connection.close)

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        try:
            return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=self._limiter)
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc

    def _read(self, key: str) -> str | None:
        row = self._connection.execute(_SELECT_LIVE, (key, now_ms())).fetchone()
        return None if row is None else str(row[0])

    def _append(
        self, key: str, encoded: str, turn: ChatTurn, session_id: str
    ) -> tuple[AppendOutcome, int, int]:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            now = now_ms()
            row = connection.execute(_SELECT_LIVE, (key, now)).fetchone()
            outcome, count, value = append_to_value(
                None if row is None else str(row[0]), encoded, turn, session_id, self._limits
            )
            expires_at = now + self._limits.ttl_seconds * 1000
            if value is not None:
                connection.execute(_UPSERT, (key, value, expires_at))
            elif outcome == "duplicate":
                connection.execute("UPDATE sessions SET expires_at = ? WHERE key = ?", (expires_at, key))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._purge_expired_if_due()
        return outcome, count, expires_at

    def _delete(self, key: str) -> bool:
        cursor = self._connection.execute(
            "DELETE FROM sessions WHERE key = ? AND expires_at > ?", (key, now_ms())
        )
        return cursor.rowcount > 0

    def _purge_unless_locked(self) -> None:
        # At open, another process holding the write lock must not keep the server from
        # starting, nor delay it: try once, and if locked, leave the purge due for a later save.
        (busy_timeout_ms,) = self._connection.execute("PRAGMA busy_timeout").fetchone()
        self._connection.execute("PRAGMA busy_timeout = 0")
        try:
            self._purge_expired_if_due()
        except sqlite3.OperationalError as exc:
            if not isinstance(_translate(exc, self._path), StoreUnavailableError):
                raise
        finally:
            self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    def _purge_expired_if_due(self) -> None:
        # Expired rows are never returned; this only gives their space back.
        now = now_ms()
        if now < self._next_purge_ms:
            return
        self._connection.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
        self._next_purge_ms = now + _PURGE_INTERVAL_MS


def _connect(path: Path, timeout_seconds: float) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory of the session database at {path} ({exc.strerror}); "
            "set SQLITE_PATH to a writable location"
        ) from exc
    connection: sqlite3.Connection | None = None
    try:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE).
        connection = sqlite3.connect(
            path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode = WAL")
        connection.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        if connection is not None:
            connection.close()
        raise _translate(exc, path) from exc
    return connection


def _translate(exc: sqlite3.Error, path: Path) -> SessionMemoryError:
    reason = str(exc) or type(exc).__name__
    if "locked" in reason or "busy" in reason:
        return StoreUnavailableError(
            f"the session database at {path} is locked by another process; try again later"
        )
    if "readonly" in reason or "read-only" in reason:
        return StoreError(
            f"the session database at {path} is read-only; check the permissions of the file "
            "and its directory (SQLite also writes -wal and -shm files beside it)"
        )
    if "unable to open" in reason:
        return StoreError(
            f"cannot open the session database at {path} ({reason}); set SQLITE_PATH to a writable file"
        )
    return StoreError(f"the session database at {path} failed: {reason}")
