"""The embedded default backend: one SQLite file, no server and no account needed."""

from __future__ import annotations

import copy
import dataclasses
import functools
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from memory.clock import now_ms
from memory.codec import decode_session
from memory.errors import SessionMemoryError, StoreError, StoreUnavailableError
from memory.limits import Limits
from memory.models import BatchSaveResult, ChatTurn, NewTurn, SaveResult, TurnOutcome
from memory.planning import PlannedTurn, check_last, plan_turns
from memory.private_files import prepare_private_database
from memory.save_errors import not_a_session, session_full, unavailable_during_save
from memory.sqlite_schema import prepare

T = TypeVar("T")

_PURGE_INTERVAL_MS = 60 * 60 * 1000


class _SessionFull(Exception):
    pass


class _NotASession(Exception):
    pass


class SQLiteStore:
    """Sessions in a local SQLite file, one row per turn, atomic across threads and processes.

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
        last = check_last(last)
        return await self._run(self._read, key, session_id, last)

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        return (await self.save_turns(session_id, [turn])).single()

    async def save_turns(self, session_id: str, turns: Sequence[ChatTurn | NewTurn]) -> BatchSaveResult:
        key = self._limits.key_for(session_id)
        planned = plan_turns(turns, self._limits.max_content_chars)
        try:
            created, outcomes, expires_at = await self._run(self._append, key, planned)
        except StoreUnavailableError as exc:
            raise unavailable_during_save(exc, planned) from exc
        except _NotASession:
            raise not_a_session(session_id) from None
        except _SessionFull:
            raise session_full(session_id, self._limits) from None
        return BatchSaveResult(
            session_id=session_id, new_session=created, turns=outcomes, expires_at=expires_at
        )

    async def delete_session(self, session_id: str) -> bool:
        key = self._limits.key_for(session_id)
        return await self._run(self._delete, key)

    async def check(self, timeout_seconds: float | None = None) -> None:
        """A trivial read; in WAL mode it never waits for another process's write lock."""
        await self._run(self._connection.execute, "SELECT 1 FROM conversations LIMIT 1")

    async def aclose(self) -> None:
        await self._run(self._connection.close)

    def namespaced(self, namespace: str) -> SQLiteStore:
        # Shares the connection and its one-thread limiter, so views never write concurrently.
        view = copy.copy(self)
        view._limits = dataclasses.replace(self._limits, key_prefix=self._limits.key_prefix + namespace)
        return view

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        try:
            return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=self._limiter)
        except sqlite3.Error as exc:
            raise _translate(exc, self._path) from exc

    def _read(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]:
        connection, now = self._connection, now_ms()
        unreadable = connection.execute(
            "SELECT CAST(value AS BLOB) FROM unreadable_sessions WHERE key = ? AND expires_at > ?",
            (key, now),
        ).fetchone()
        if unreadable is not None:
            decode_session(bytes(unreadable[0]), session_id)  # raises, saying where it fails
        if not connection.execute(
            "SELECT 1 FROM conversations WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone():
            return []
        if last is None:
            rows = connection.execute(
                "SELECT role, content, timestamp FROM turns WHERE key = ? ORDER BY seq", (key,)
            ).fetchall()
        else:
            rows = connection.execute(
                "SELECT role, content, timestamp FROM turns WHERE key = ? ORDER BY seq DESC LIMIT ?",
                (key, last),
            ).fetchall()[::-1]
        return [
            ChatTurn.model_construct(role=role, content=content, timestamp=ts) for role, content, ts in rows
        ]

    def _append(self, key: str, planned: Sequence[PlannedTurn]) -> tuple[bool, list[TurnOutcome], int]:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = self._append_in_transaction(key, planned)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._purge_expired_if_due()
        return result

    def _append_in_transaction(
        self, key: str, planned: Sequence[PlannedTurn]
    ) -> tuple[bool, list[TurnOutcome], int]:
        connection, now = self._connection, now_ms()
        expires_at = self._limits.expires_at(now)
        live = _live_session(connection, key, now)
        created = live is None
        count, size = (0, 2) if live is None else live
        outcomes: list[TurnOutcome] = []
        added: list[PlannedTurn] = []  # with the timestamps they are stored with
        for turn in planned:
            stamp, state = _place(connection, key, turn, added)
            if state == 1:
                placed = dataclasses.replace(turn, timestamp=stamp)
                size += len(placed.text.encode()) + (1 if count + len(added) else 0)
                added.append(placed)
            outcomes.append(TurnOutcome(timestamp=stamp, stored=state == 1))
        if size > self._limits.max_session_bytes:
            raise _SessionFull
        connection.executemany(
            "INSERT INTO turns VALUES (?, ?, ?, ?, ?, 1)",
            (
                (key, seq, turn.role, turn.content, turn.timestamp)
                for seq, turn in enumerate(added, start=count)
            ),
        )
        connection.execute(
            "INSERT INTO conversations VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "expires_at = excluded.expires_at, turn_count = excluded.turn_count, "
            "stored_bytes = excluded.stored_bytes",
            (key, expires_at, count + len(added), size),
        )
        return created and bool(added), outcomes, expires_at

    def _delete(self, key: str) -> bool:
        connection, now = self._connection, now_ms()
        connection.execute("BEGIN IMMEDIATE")
        try:
            _forget_if_expired(connection, key, now)
            existed = connection.execute("DELETE FROM conversations WHERE key = ?", (key,)).rowcount
            connection.execute("DELETE FROM turns WHERE key = ?", (key,))
            existed += connection.execute("DELETE FROM unreadable_sessions WHERE key = ?", (key,)).rowcount
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return existed > 0

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
        # Expired sessions are never returned; this only gives their space back.
        now = now_ms()
        if now < self._next_purge_ms:
            return
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "DELETE FROM turns WHERE key IN (SELECT key FROM conversations WHERE expires_at <= ?)", (now,)
            )
            connection.execute("DELETE FROM conversations WHERE expires_at <= ?", (now,))
            connection.execute("DELETE FROM unreadable_sessions WHERE expires_at <= ?", (now,))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._next_purge_ms = now + _PURGE_INTERVAL_MS


def _place(
    connection: sqlite3.Connection, key: str, turn: PlannedTurn, added: Sequence[PlannedTurn]
) -> tuple[int, int]:
    """The turn's timestamp and state (1 new, 0 an equal turn is there, 2 it is the first turn)."""
    if turn.mode == "keep":
        row = connection.execute(
            "SELECT seq FROM turns WHERE key = ? AND timestamp = ? AND role = ? AND content = ? "
            "AND comparable = 1 LIMIT 1",
            (key, turn.timestamp, turn.role, turn.content),
        ).fetchone()
        if row is not None:
            return turn.timestamp, 2 if row[0] == 0 else 0
        if any(other.prefix == turn.prefix and other.timestamp == turn.timestamp for other in added):
            return turn.timestamp, 0
        return turn.timestamp, 1
    taken = {
        int(stamp)
        for (stamp,) in connection.execute(
            "SELECT timestamp FROM turns WHERE key = ? AND timestamp >= ? AND role = ? AND content = ? "
            "AND comparable = 1",
            (key, turn.timestamp, turn.role, turn.content),
        )
    }
    taken.update(other.timestamp for other in added if other.prefix == turn.prefix)
    stamp = turn.timestamp
    while stamp in taken:
        stamp += 1
    return stamp, 1


def _live_session(connection: sqlite3.Connection, key: str, now: int) -> tuple[int, int] | None:
    """The live session's turn count and stored bytes, or None; an expired one is forgotten.

    Raises _NotASession when the key holds a live value that is not a session.
    """
    unreadable = connection.execute(
        "SELECT expires_at FROM unreadable_sessions WHERE key = ?", (key,)
    ).fetchone()
    if unreadable is not None:
        if unreadable[0] > now:
            raise _NotASession
        connection.execute("DELETE FROM unreadable_sessions WHERE key = ?", (key,))
    row = connection.execute(
        "SELECT turn_count, stored_bytes, expires_at FROM conversations WHERE key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row[2] <= now:
        connection.execute("DELETE FROM conversations WHERE key = ?", (key,))
        connection.execute("DELETE FROM turns WHERE key = ?", (key,))
        return None
    return int(row[0]), int(row[1])


def _forget_if_expired(connection: sqlite3.Connection, key: str, now: int) -> None:
    expired = connection.execute(
        "SELECT 1 FROM conversations WHERE key = ? AND expires_at <= ?", (key, now)
    ).fetchone()
    if expired:
        connection.execute("DELETE FROM conversations WHERE key = ?", (key,))
        connection.execute("DELETE FROM turns WHERE key = ?", (key,))
    connection.execute("DELETE FROM unreadable_sessions WHERE key = ? AND expires_at <= ?", (key, now))


def _connect(path: Path, timeout_seconds: float) -> sqlite3.Connection:
    prepare_private_database(path)
    connection: sqlite3.Connection | None = None
    try:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE).
        connection = sqlite3.connect(
            path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode = WAL")
        prepare(connection)
    except sqlite3.Error as exc:
        if connection is not None:
            connection.close()
        raise _translate(exc, path) from exc
    return connection


def _translate(exc: sqlite3.Error, path: Path) -> SessionMemoryError:
    # No path in these messages: they reach clients. The startup log names the file.
    reason = str(exc) or type(exc).__name__
    if "locked" in reason or "busy" in reason:
        return StoreUnavailableError("the session database is locked by another process; try again later")
    if "readonly" in reason or "read-only" in reason:
        return StoreError(
            "the session database is read-only; check the permissions of the file and its "
            "directory (SQLite also writes -wal and -shm files beside it)"
        )
    if "unable to open" in reason:
        return StoreError(f"cannot open the session database ({reason}); set SQLITE_PATH to a writable file")
    return StoreError(f"the session database failed: {reason}")
