"""The embedded default backend: one SQLite file (see `memory.sqlite_file`), no server and no
account needed; a session is a row in `conversations` and one row per turn in `turns`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import anyio.to_thread

from memory.base_store import BaseStore
from memory.config import StoreConfig
from memory.errors import (
    StoreUnavailableError,
    delete_outdated,
    deleted_during_save,
    id_taken,
    not_a_session,
    session_full,
)
from memory.index import ListPosition, key_space
from memory.models import BatchSaveResult, ChatTurn, SessionSummary, TurnOutcome
from memory.rules import (
    DELETION_MARKER_SECONDS,
    PlannedSave,
    PlannedTurn,
    decode_session,
    encode_turn,
    expiry_ms,
    now_ms,
)
from memory.sqlite_file import connect, insert_session, locked, transaction, translate

T = TypeVar("T")

_PURGE_INTERVAL_MS = 60 * 60 * 1000
# _place's state for a turn whose id is stored: an earlier attempt of this save.
_FOUND_BY_ID = 3


class _SessionFull(Exception):
    pass


class _NotASession(Exception):
    pass


class _Deleted(Exception):
    pass


class _Outdated(Exception):
    pass


class _IdTaken(Exception):
    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id


class SQLiteStore(BaseStore):
    """Sessions in a local SQLite file, one row per turn, atomic across threads and processes.

    Two connections, each used from one worker thread at a time, so the event loop never
    blocks: saves and deletes on one, reads on the other, which WAL lets proceed while a
    writer (here or in another process) holds SQLite's write lock. Every call has one deadline,
    the store timeout, for its turn at the connection and SQLite's lock together.
    """

    backend = "sqlite"

    def __init__(self, config: StoreConfig, writer: sqlite3.Connection, reader: sqlite3.Connection) -> None:
        super().__init__(config)
        self._writer, self._reader = writer, reader
        self._write_turn, self._read_turn = anyio.Lock(), anyio.Lock()
        self._path = config.sqlite_path
        self._next_purge_ms = 0
        self._secret: bytes | None = None

    @classmethod
    async def open(cls, config: StoreConfig) -> SQLiteStore:
        writer, reader = await anyio.to_thread.run_sync(
            connect, config.sqlite_path, config.store_timeout_seconds, config.session_ttl_seconds
        )
        store = cls(config, writer, reader)
        try:
            # Another process holding the write lock must not keep the server from starting, nor
            # delay it: one try, and if locked, the purge stays due for a later save.
            with contextlib.suppress(StoreUnavailableError):
                await store._write(store._purge_expired_if_due, seconds=0)
        except BaseException:
            await store.aclose()
            raise
        return store

    @property
    def location(self) -> str:
        return str(self._path)

    async def check(self, timeout_seconds: float | None = None) -> None:
        """A trivial read, which in WAL mode does not wait for any write lock."""
        await self._run(
            self._reader,
            self._read_turn,
            timeout_seconds,
            self._reader.execute,
            "SELECT 1 FROM conversations LIMIT 1",
        )

    async def aclose(self) -> None:
        async with self._write_turn, self._read_turn:
            await anyio.to_thread.run_sync(self._writer.close)
            await anyio.to_thread.run_sync(self._reader.close)

    async def _read(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]:
        return await self._run(self._reader, self._read_turn, None, self._read_rows, key, session_id, last)

    async def _append(self, key: str, session_id: str, save: PlannedSave) -> BatchSaveResult:
        try:
            return await self._write(self._append_rows, key, session_id, save)
        except _NotASession:
            raise not_a_session(session_id) from None
        except _SessionFull:
            raise session_full(session_id, self.config.max_session_bytes) from None
        except _Deleted:
            raise deleted_during_save(session_id) from None
        except _IdTaken as exc:
            raise id_taken(exc.turn_id, session_id) from None

    async def _delete(self, key: str, session_id: str) -> bool:
        try:
            return await self._write(self._delete_rows, key, now_ms())
        except _Outdated:
            raise delete_outdated(session_id) from None

    async def _put(
        self, key: str, session_id: str, turns: Sequence[ChatTurn], expires_at: int, updated_at: int
    ) -> bool:
        return await self._write(self._put_rows, key, session_id, turns, expires_at, updated_at)

    def _put_rows(
        self, key: str, session_id: str, turns: Sequence[ChatTurn], expires_at: int, updated_at: int
    ) -> bool:
        with transaction(self._writer) as connection:
            now = now_ms()
            try:
                if _live_session(connection, key, now) is not None:
                    return False
            except _NotASession:
                return False  # a value kept aside as unreadable: left as it is
            connection.execute("DELETE FROM turns WHERE key = ?", (key,))
            insert_session(
                connection, key, (key_space(key, session_id), session_id), turns, expires_at, updated_at
            )
        return True

    async def _list(
        self, space: str, live_after: int, after: ListPosition | None, limit: int
    ) -> tuple[list[SessionSummary], bool]:
        rows = await self._run(
            self._reader, self._read_turn, None, _list_rows, self._reader, space, after, limit
        )
        sessions = [
            SessionSummary(session_id=session_id, title=title, updated_at=updated_at, expires_at=expires_at)
            for session_id, title, updated_at, expires_at in rows[:limit]
        ]
        return sessions, len(rows) > limit

    async def _ids_starting_with(self, space: str, live_after: int, typed: str, limit: int) -> list[str]:
        rows = await self._run(
            self._reader, self._read_turn, None, _list_rows, self._reader, space, None, 1000
        )
        return [row[0] for row in rows if row[0].startswith(typed)][:limit]

    async def _cursor_secret(self) -> bytes:
        if self._secret is None:
            self._secret = (await self._write(_cursor_secret, self._writer)).encode()
        return self._secret

    async def _write(self, function: Callable[..., T], *args: object, seconds: float | None = None) -> T:
        return await self._run(self._writer, self._write_turn, seconds, function, *args)

    async def _run(
        self,
        connection: sqlite3.Connection,
        turn: anyio.Lock,
        seconds: float | None,
        function: Callable[..., T],
        *args: object,
    ) -> T:
        """Run `function` in a worker thread with `connection`, all within `seconds` (the store
        timeout by default): the wait for the connection, then SQLite's busy timeout, is what
        is left of it, so that calls queued behind a lock held elsewhere fail together, in time."""
        seconds = self.config.store_timeout_seconds if seconds is None else seconds
        deadline = anyio.current_time() + seconds
        try:
            turn.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(seconds):
                    await turn.acquire()
            except TimeoutError:
                raise locked() from None
        try:
            busy_ms = max(0, int((deadline - anyio.current_time()) * 1000))
            call = functools.partial(_within, connection, busy_ms, function, *args)
            return await anyio.to_thread.run_sync(call)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        finally:
            turn.release()

    # -- in the worker thread ----------------------------------------------------------------

    def _read_rows(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]:
        connection, now = self._reader, now_ms()
        connection.execute("BEGIN")  # one snapshot for the three queries
        try:
            unreadable = connection.execute(
                "SELECT CAST(value AS BLOB) FROM unreadable_sessions WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
            if unreadable is not None:
                decode_session(bytes(unreadable[0]), session_id)  # raises, saying where it fails
            live = connection.execute(
                "SELECT turn_count, dropped FROM conversations WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            if not live:
                return []
            if last is None:
                rows = connection.execute(
                    "SELECT role, content, timestamp, id FROM turns WHERE key = ? ORDER BY seq", (key,)
                ).fetchall()
            else:
                rows = connection.execute(
                    "SELECT role, content, timestamp, id FROM turns WHERE key = ? ORDER BY seq DESC LIMIT ?",
                    (key, last),
                ).fetchall()[::-1]
            turns = [
                ChatTurn.model_construct(role=role, content=content, timestamp=ts, id=turn_id)
                for role, content, ts, turn_id in rows
            ]
            turn_count, dropped = live
            if dropped and turns and len(turns) >= turn_count:  # the read reaches the session's start
                turns[0] = turns[0].model_copy(update={"dropped": dropped})
            return turns
        finally:
            connection.execute("COMMIT")

    def _append_rows(self, key: str, session_id: str, save: PlannedSave) -> BatchSaveResult:
        with transaction(self._writer) as connection:
            now = now_ms()
            live = _live_session(connection, key, now)
            # Whether the session exists or a newer save created it again since.
            if _deleted_since(connection, key, save.started_at, now):
                raise _Deleted
            count, size = (0, 2) if live is None else live
            outcomes: list[TurnOutcome] = []
            added: list[PlannedTurn] = []  # with the timestamps they are stored with
            found_by_id = 0
            for turn in save.turns:
                stamp, state = _place(connection, key, turn, added)
                found_by_id += state == _FOUND_BY_ID
                state = 0 if state == _FOUND_BY_ID else state
                if state == 1:
                    placed = dataclasses.replace(turn, timestamp=stamp)
                    size += len(placed.text.encode()) + (1 if count + len(added) else 0)
                    added.append(placed)
                outcomes.append(TurnOutcome(timestamp=stamp, stored=state == 1))
            if found_by_id and added:
                # A save is stored whole or not at all: some turns found by their ids and others
                # new means these ids were given to another save (a batch of other turns).
                raise _IdTaken(added[0].id)
            dropped = 0
            if size > self.config.max_session_bytes:
                if self.config.when_full != "drop-oldest":
                    raise _SessionFull
                target = self.config.max_session_bytes * 3 // 4
                dropped, freed = _drop_oldest(connection, key, size - target)
                count, size = count - dropped, size - freed
            (next_seq,) = connection.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM turns WHERE key = ?", (key,)
            ).fetchone()
            connection.executemany(
                "INSERT INTO turns (key, seq, role, content, timestamp, comparable, id) "
                "VALUES (?, ?, ?, ?, ?, 1, ?)",
                (
                    (key, seq, turn.role, turn.content, turn.timestamp, turn.id)
                    for seq, turn in enumerate(added, start=next_seq)
                ),
            )
            expiry = expiry_ms(self.config, now)
            connection.execute(
                "INSERT INTO conversations (key, expires_at, turn_count, stored_bytes, space, session_id, "
                "updated_at, title, dropped) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET expires_at = excluded.expires_at, turn_count = excluded.turn_count, "
                "stored_bytes = excluded.stored_bytes, updated_at = max(updated_at, excluded.updated_at), "
                "dropped = dropped + excluded.dropped",
                (
                    key,
                    expiry,
                    count + len(added),
                    size,
                    key_space(key, session_id),
                    session_id,
                    save.started_at,
                    save.title,
                    dropped,
                ),
            )
        self._purge_expired_if_due()
        return BatchSaveResult(
            session_id=session_id,
            id=save.id,
            new_session=live is None and bool(added),
            turns=outcomes,
            expires_at=expiry,
            dropped=dropped,
        )

    def _delete_rows(self, key: str, started_at: int) -> bool:
        with transaction(self._writer) as connection:
            now = now_ms()
            _forget_if_expired(connection, key, now)
            # A save that began after this delete and has landed: the delete is out of date.
            saved = connection.execute(
                "SELECT updated_at FROM conversations WHERE key = ?", (key,)
            ).fetchone()
            if saved is not None and saved[0] is not None and saved[0] > started_at:
                raise _Outdated
            connection.execute(
                "INSERT OR REPLACE INTO deleted_sessions VALUES (?, ?, ?)",
                (key, now, now + DELETION_MARKER_SECONDS * 1000),
            )
            existed = connection.execute("DELETE FROM conversations WHERE key = ?", (key,)).rowcount
            connection.execute("DELETE FROM turns WHERE key = ?", (key,))
            existed += connection.execute("DELETE FROM unreadable_sessions WHERE key = ?", (key,)).rowcount
        return existed > 0

    def _purge_expired_if_due(self) -> None:
        # Expired sessions are never returned; this only gives their space back.
        now = now_ms()
        if now < self._next_purge_ms:
            return
        with transaction(self._writer) as connection:
            connection.execute(
                "DELETE FROM turns WHERE key IN (SELECT key FROM conversations WHERE expires_at <= ?)", (now,)
            )
            connection.execute("DELETE FROM conversations WHERE expires_at <= ?", (now,))
            connection.execute("DELETE FROM unreadable_sessions WHERE expires_at <= ?", (now,))
            connection.execute("DELETE FROM deleted_sessions WHERE expires_at <= ?", (now,))
        self._next_purge_ms = now + _PURGE_INTERVAL_MS


def _place(
    connection: sqlite3.Connection, key: str, turn: PlannedTurn, added: Sequence[PlannedTurn]
) -> tuple[int, int]:
    """The turn's timestamp and state: 1 new; 0 an equal turn is there, 2 likewise and it is the
    first turn; _FOUND_BY_ID this turn's id is stored (an earlier attempt of this save)."""
    row = connection.execute(
        "SELECT seq, timestamp, role, content FROM turns WHERE key = ? AND id = ? LIMIT 1", (key, turn.id)
    ).fetchone()
    if row is not None:  # stored by an earlier attempt of this save
        if (row[2], row[3]) != (turn.role, turn.content):
            raise _IdTaken(turn.id)
        return int(row[1]), _FOUND_BY_ID
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


def _list_rows(
    connection: sqlite3.Connection, space: str, after: ListPosition | None, limit: int
) -> list[tuple[str, str | None, int, int]]:
    """One more than `limit` live sessions of `space` from `after` on, most recent save first."""
    stamp, session_id = (None, None) if after is None else (after.updated_at, after.session_id)
    return connection.execute(
        "SELECT session_id, title, updated_at, expires_at FROM conversations "
        "WHERE space = ? AND expires_at > ? "
        "AND (? IS NULL OR updated_at < ? OR (updated_at = ? AND session_id < ?)) "
        "ORDER BY updated_at DESC, session_id DESC LIMIT ?",
        (space, now_ms(), stamp, stamp, stamp, session_id, limit + 1),
    ).fetchall()


def _cursor_secret(connection: sqlite3.Connection) -> str:
    with transaction(connection):
        connection.execute("INSERT OR IGNORE INTO secrets VALUES ('cursor', ?)", (secrets.token_hex(32),))
        value: str = connection.execute("SELECT value FROM secrets WHERE name = 'cursor'").fetchone()[0]
    return value


def _drop_oldest(connection: sqlite3.Connection, key: str, excess: int) -> tuple[int, int]:
    """Delete the session's oldest turns until at least `excess` bytes of its JSON form are freed
    (or none is left); how many turns, and how many bytes."""
    freed, last_seq, count = 0, None, 0
    rows = connection.execute(
        "SELECT seq, role, content, timestamp, id FROM turns WHERE key = ? ORDER BY seq", (key,)
    )
    for seq, role, content, timestamp, turn_id in rows:
        if freed >= excess:
            break
        turn = ChatTurn.model_construct(role=role, content=content, timestamp=timestamp, id=turn_id)
        freed += len(encode_turn(turn).encode()) + 1  # and its comma
        last_seq, count = seq, count + 1
    rows.close()
    if last_seq is not None:
        connection.execute("DELETE FROM turns WHERE key = ? AND seq <= ?", (key, last_seq))
    return count, freed


def _deleted_since(connection: sqlite3.Connection, key: str, started_at: int, now: int) -> bool:
    """Whether the session was deleted after a save that began at `started_at`."""
    row = connection.execute(
        "SELECT deleted_at FROM deleted_sessions WHERE key = ? AND expires_at > ?", (key, now)
    ).fetchone()
    return row is not None and started_at < row[0]


def _forget_if_expired(connection: sqlite3.Connection, key: str, now: int) -> None:
    expired = connection.execute(
        "SELECT 1 FROM conversations WHERE key = ? AND expires_at <= ?", (key, now)
    ).fetchone()
    if expired:
        connection.execute("DELETE FROM conversations WHERE key = ?", (key,))
        connection.execute("DELETE FROM turns WHERE key = ?", (key,))
    connection.execute("DELETE FROM unreadable_sessions WHERE key = ? AND expires_at <= ?", (key, now))


def _within(connection: sqlite3.Connection, busy_ms: int, function: Callable[..., T], *args: object) -> T:
    connection.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return function(*args)
