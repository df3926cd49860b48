"""The embedded default backend: one SQLite file, no server and no account needed.

One row per turn, so that a save and a read of the newest turns cost the same at 10 and at
5,000 turns; the migration from 0.1.0's one-value-per-session table; and the file's modes:
the chat history is private to the user running the server (directory 0700, files 0600).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from memory.config import StoreConfig
from memory.errors import (
    CorruptSessionError,
    SessionMemoryError,
    StoreError,
    StoreUnavailableError,
    not_a_session,
    session_full,
)
from memory.models import BatchSaveResult, ChatTurn, TurnOutcome
from memory.rules import (
    BaseStore,
    PlannedTurn,
    decode_session,
    encode_session,
    encode_turn,
    expiry_ms,
    now_ms,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PURGE_INTERVAL_MS = 60 * 60 * 1000


class _SessionFull(Exception):
    pass


class _NotASession(Exception):
    pass


class SQLiteStore(BaseStore):
    """Sessions in a local SQLite file, one row per turn, atomic across threads and processes.

    One connection, used from one worker thread at a time, so the event loop
    never blocks; other processes are kept out by SQLite's own write lock
    (BEGIN IMMEDIATE), waited for up to the store timeout.
    """

    backend = "sqlite"

    def __init__(self, config: StoreConfig, connection: sqlite3.Connection) -> None:
        super().__init__(config)
        self._connection = connection
        self._path = config.sqlite_path
        self._limiter = anyio.CapacityLimiter(1)
        self._next_purge_ms = 0

    @classmethod
    async def open(cls, config: StoreConfig) -> SQLiteStore:
        connection = await anyio.to_thread.run_sync(
            _connect, config.sqlite_path, config.store_timeout_seconds
        )
        store = cls(config, connection)
        try:
            await store._run(store._purge_unless_locked)
        except BaseException:
            await store.aclose()
            raise
        return store

    @property
    def location(self) -> str:
        return str(self._path)

    async def check(self, timeout_seconds: float | None = None) -> None:
        """A trivial read; in WAL mode it never waits for another process's write lock."""
        await self._run(self._connection.execute, "SELECT 1 FROM conversations LIMIT 1")

    async def aclose(self) -> None:
        await self._run(self._connection.close)

    async def _read(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]:
        return await self._run(self._read_rows, key, session_id, last)

    async def _append(self, key: str, session_id: str, planned: Sequence[PlannedTurn]) -> BatchSaveResult:
        try:
            return await self._run(self._append_rows, key, session_id, planned)
        except _NotASession:
            raise not_a_session(session_id) from None
        except _SessionFull:
            raise session_full(session_id, self.config.max_session_bytes) from None

    async def _delete(self, key: str) -> bool:
        return await self._run(self._delete_rows, key)

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        try:
            return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=self._limiter)
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    # -- in the worker thread ----------------------------------------------------------------

    def _read_rows(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]:
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

    def _append_rows(self, key: str, session_id: str, planned: Sequence[PlannedTurn]) -> BatchSaveResult:
        with _transaction(self._connection) as connection:
            now = now_ms()
            live = _live_session(connection, key, now)
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
            if size > self.config.max_session_bytes:
                raise _SessionFull
            connection.executemany(
                "INSERT INTO turns VALUES (?, ?, ?, ?, ?, 1)",
                (
                    (key, seq, turn.role, turn.content, turn.timestamp)
                    for seq, turn in enumerate(added, start=count)
                ),
            )
            expiry = expiry_ms(self.config, now)
            connection.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "expires_at = excluded.expires_at, turn_count = excluded.turn_count, "
                "stored_bytes = excluded.stored_bytes",
                (key, expiry, count + len(added), size),
            )
        self._purge_expired_if_due()
        return BatchSaveResult(
            session_id=session_id, new_session=live is None and bool(added), turns=outcomes, expires_at=expiry
        )

    def _delete_rows(self, key: str) -> bool:
        with _transaction(self._connection) as connection:
            _forget_if_expired(connection, key, now_ms())
            existed = connection.execute("DELETE FROM conversations WHERE key = ?", (key,)).rowcount
            connection.execute("DELETE FROM turns WHERE key = ?", (key,))
            existed += connection.execute("DELETE FROM unreadable_sessions WHERE key = ?", (key,)).rowcount
        return existed > 0

    def _purge_unless_locked(self) -> None:
        # At open, another process holding the write lock must not keep the server from
        # starting, nor delay it: try once, and if locked, leave the purge due for a later save.
        (busy_timeout_ms,) = self._connection.execute("PRAGMA busy_timeout").fetchone()
        self._connection.execute("PRAGMA busy_timeout = 0")
        try:
            self._purge_expired_if_due()
        except sqlite3.OperationalError as exc:
            if not isinstance(translate(exc), StoreUnavailableError):
                raise
        finally:
            self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    def _purge_expired_if_due(self) -> None:
        # Expired sessions are never returned; this only gives their space back.
        now = now_ms()
        if now < self._next_purge_ms:
            return
        with _transaction(self._connection) as connection:
            connection.execute(
                "DELETE FROM turns WHERE key IN (SELECT key FROM conversations WHERE expires_at <= ?)", (now,)
            )
            connection.execute("DELETE FROM conversations WHERE expires_at <= ?", (now,))
            connection.execute("DELETE FROM unreadable_sessions WHERE expires_at <= ?", (now,))
        self._next_purge_ms = now + _PURGE_INTERVAL_MS


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: SQLite's write lock from its start (BEGIN IMMEDIATE), all or nothing."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


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
        raise translate(exc) from exc
    return connection


def translate(exc: sqlite3.Error) -> SessionMemoryError:
    """The memory error an sqlite3 exception means."""
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


# -- the layout, and the migration from 0.1.0 --------------------------------------------------

LAYOUT_VERSION = 2  # PRAGMA user_version; 0.1.0's files have 0

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    turn_count INTEGER NOT NULL,
    -- The session's size as the JSON array the other backends store, for the size limit.
    stored_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_expires_at ON conversations (expires_at);
CREATE TABLE IF NOT EXISTS turns (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    -- 0 for a turn imported from another layout: like the Redis backends, which find equal
    -- turns by their JSON.stringify text, a retry is never matched against it.
    comparable INTEGER NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE INDEX IF NOT EXISTS turns_by_timestamp ON turns (key, timestamp);
-- Values that are not a JSON array of turns, kept byte for byte, never appended to.
CREATE TABLE IF NOT EXISTS unreadable_sessions (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
"""


def prepare(connection: sqlite3.Connection) -> None:
    """Bring the file to the current layout, migrating 0.1.0's data in one transaction.

    A migration that is interrupted (a crash, a kill) is rolled back by SQLite as a whole,
    so the file is either untouched or migrated, and the next start migrates it again.
    """
    if _version(connection) == LAYOUT_VERSION:
        return
    with _transaction(connection):
        # Another process may have done it while this one waited for the lock.
        if _version(connection) != LAYOUT_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            if _has_legacy_table(connection):
                _migrate_legacy(connection)
            connection.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")


def import_value(connection: sqlite3.Connection, key: str, value: str | bytes, expires_at: int) -> None:
    """Store a session given as the JSON text other backends keep (within a transaction).

    A value that is not a session is kept as it was given, bytes as a BLOB, byte for byte.
    """
    try:
        turns = decode_session(value, key)
    except CorruptSessionError:
        connection.execute("INSERT INTO unreadable_sessions VALUES (?, ?, ?)", (key, value, expires_at))
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    connection.execute(
        "INSERT INTO conversations VALUES (?, ?, ?, ?)",
        (key, expires_at, len(turns), len(encode_session(turns).encode("utf-8"))),
    )
    connection.executemany(
        "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?)",
        (
            (key, seq, turn.role, turn.content, turn.timestamp, int(encode_turn(turn) in text))
            for seq, turn in enumerate(turns)
        ),
    )


def _migrate_legacy(connection: sqlite3.Connection) -> None:
    # As bytes: a 0.1.0 value may be a BLOB, or TEXT that is not UTF-8, which sqlite3 would
    # refuse to hand over as str (and its error would quote the chat).
    rows = connection.execute("SELECT key, CAST(value AS BLOB), expires_at FROM sessions").fetchall()
    for key, value, expires_at in rows:
        import_value(connection, str(key), bytes(value), int(expires_at))
    connection.execute("DROP TABLE sessions")
    logger.info("moved %d sessions to the one-row-per-turn layout", len(rows))


def _version(connection: sqlite3.Connection) -> int:
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    return version


def _has_legacy_table(connection: sqlite3.Connection) -> bool:
    row = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'"
    ).fetchone()
    return row is not None


# -- file modes --------------------------------------------------------------------------------

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# SQLite creates these beside the database, with the database file's own permissions.
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")


def prepare_private_database(path: Path) -> None:
    """Create the directory (0700) and the empty database file (0600) if missing, whatever the umask.

    Existing ones are left as they are, with a warning if other users may read them. Where
    modes mean nothing (Windows, whose ACLs decide who reads a file), only the files are made.
    """
    directory = path.parent
    if os.name != "posix":
        logger.info("file modes are not set on this platform: %s is protected by its folder's ACLs", path)
    try:
        if directory.is_dir():
            warn_if_open_to_others(directory)
        else:
            directory.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
            os.chmod(directory, PRIVATE_DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
        _create_private_file(path)
    except OSError as exc:
        raise StoreError(
            f"cannot create the session database at {path} ({exc.strerror}); "
            "set SQLITE_PATH to a writable location"
        ) from exc
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILE_SUFFIXES)):
        if file.exists():
            warn_if_open_to_others(file)


def _create_private_file(path: Path) -> None:
    # Created here rather than by SQLite, which would use 0644 under the usual umask; its -wal
    # and -shm files then copy this file's mode.
    # The umask can only take bits away, so the file is never more open than 0600 before the
    # chmod; os.chmod (not os.fchmod, absent on Windows before 3.13) then restores them.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
        os.chmod(path, PRIVATE_FILE_MODE)


def warn_if_open_to_others(path: Path) -> None:
    if os.name != "posix":
        return  # st_mode does not say who may read a file there
    mode = stat.S_IMODE(path.stat().st_mode)
    # A sticky directory (/tmp) is shared by design; the files in it are what matter.
    if mode & 0o007 and not mode & stat.S_ISVTX:
        wanted = PRIVATE_DIRECTORY_MODE if path.is_dir() else PRIVATE_FILE_MODE
        logger.warning(
            "%s can be read by other users (mode %o); the chat history is private: chmod %o %s",
            path,
            mode,
            wanted,
            path,
        )
