"""The SQLite file: made private to the user running the server (directory 0700, files 0600),
opened in WAL mode, laid out one row per turn (so that a save and a read of the newest turns
cost the same at 10 and at 5,000 turns), migrated from 0.1.0's one-value-per-session table;
and what its errors mean."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from memory.errors import CorruptSessionError, SessionMemoryError, StoreError, StoreUnavailableError
from memory.index import session_title
from memory.models import ChatTurn
from memory.rules import decode_session, encode_session, found_as_stored

logger = logging.getLogger(__name__)


def connect(
    path: Path, timeout_seconds: float, ttl_seconds: int
) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The writer, with the file prepared and migrated, and the reader. `ttl_seconds` dates the
    last save of sessions migrated from layouts that did not keep it."""
    prepare_private_database(path)
    opened: list[sqlite3.Connection] = []
    try:
        for _ in range(2):
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE).
            opened.append(
                sqlite3.connect(path, timeout=timeout_seconds, isolation_level=None, check_same_thread=False)
            )
        writer, reader = opened
        refuse_a_later_layout(writer)  # before WAL mode, which would change the file
        writer.execute("PRAGMA journal_mode = WAL")
        prepare(writer, ttl_seconds)
        reader.execute("PRAGMA query_only = ON")
    except BaseException as exc:
        for connection in opened:
            connection.close()
        if isinstance(exc, sqlite3.Error):
            raise translate(exc) from exc
        raise
    return writer, reader


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: SQLite's write lock from its start (BEGIN IMMEDIATE), all or nothing."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def locked() -> StoreUnavailableError:
    return StoreUnavailableError("the session database is locked by another process; try again later")


def translate(exc: sqlite3.Error) -> SessionMemoryError:
    """The memory error an sqlite3 exception means."""
    # No path in these messages: they reach clients. The startup log names the file.
    reason = str(exc) or type(exc).__name__
    if "locked" in reason or "busy" in reason:
        return locked()
    if "readonly" in reason or "read-only" in reason:
        return StoreError(
            "the session database is read-only; check the permissions of the file and its "
            "directory (SQLite also writes -wal and -shm files beside it)"
        )
    if "unable to open" in reason:
        return StoreError(f"cannot open the session database ({reason}); set SQLITE_PATH to a writable file")
    return StoreError(f"the session database failed: {reason}")


# -- the layout, and the migration from 0.1.0 --------------------------------------------------

# PRAGMA user_version: 0.1.0's files have 0; 2 had no turn ids, deletion markers or session list.
LAYOUT_VERSION = 3

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

# What layout 3 adds: the id of the save that stored a turn (NULL for turns stored without
# one); the time of a session's last delete, kept a while so that a save that began before it
# does not create the session again; and what lists sessions: each one's key space (prefix and
# namespace) and id, last save and title, and the secret that signs list cursors.
LAYOUT_3 = """
ALTER TABLE conversations ADD COLUMN space TEXT;
ALTER TABLE conversations ADD COLUMN session_id TEXT;
ALTER TABLE conversations ADD COLUMN updated_at INTEGER;
ALTER TABLE conversations ADD COLUMN title TEXT;
ALTER TABLE conversations ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS conversations_by_last_save
    ON conversations (space, updated_at DESC, session_id DESC);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
ALTER TABLE turns ADD COLUMN id TEXT;
CREATE INDEX IF NOT EXISTS turns_by_id ON turns (key, id);
CREATE TABLE IF NOT EXISTS deleted_sessions (
    key TEXT PRIMARY KEY,
    deleted_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deleted_sessions_expires_at ON deleted_sessions (expires_at);
"""


def prepare(connection: sqlite3.Connection, ttl_seconds: int) -> None:
    """Bring the file to the current layout, migrating older layouts' data in one transaction.

    A migration that is interrupted (a crash, a kill) is rolled back by SQLite as a whole,
    so the file is either untouched or migrated, and the next start migrates it again. A file
    of a later layout is refused: this server would not know what it holds.
    """
    if _version(connection) == LAYOUT_VERSION:
        return
    with transaction(connection):
        # Another process may have done it while this one waited for the lock.
        refuse_a_later_layout(connection)
        version = _version(connection)
        if version < 2:
            _run_script(connection, SCHEMA)
        if version < LAYOUT_VERSION:
            _run_script(connection, LAYOUT_3)
            _list_existing_sessions(connection, ttl_seconds)
            if _has_legacy_table(connection):
                _migrate_legacy(connection, ttl_seconds)
            connection.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")


def refuse_a_later_layout(connection: sqlite3.Connection) -> None:
    version = _version(connection)
    if version > LAYOUT_VERSION:
        raise StoreError(
            f"the session database has layout {version}, written by a later version of this "
            f"server; this one reads layout {LAYOUT_VERSION} (upgrade it, or use another SQLITE_PATH)"
        )


def _run_script(connection: sqlite3.Connection, script: str) -> None:
    # One statement at a time: executescript would commit the transaction first.
    for statement in script.split(";"):
        if statement.strip():
            connection.execute(statement)


def import_value(
    connection: sqlite3.Connection, key: str, value: str | bytes, expires_at: int, updated_at: int
) -> None:
    """Store a session given as the JSON text other backends keep (within a transaction).

    A value that is not a session is kept as it was given, bytes as a BLOB, byte for byte.
    """
    try:
        turns = decode_session(value, key)
    except CorruptSessionError:
        connection.execute("INSERT INTO unreadable_sessions VALUES (?, ?, ?)", (key, value, expires_at))
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    # A turn written in another layout is never taken for a retry (see `comparable`).
    comparable = [int(found_as_stored(turn, text)) for turn in turns]
    insert_session(connection, key, split_key(key), turns, expires_at, updated_at, comparable)


def insert_session(
    connection: sqlite3.Connection,
    key: str,
    space_and_id: tuple[str | None, str | None],
    turns: Sequence[ChatTurn],
    expires_at: int,
    updated_at: int,
    comparable: Sequence[int] | None = None,
) -> None:
    """Insert a whole session, its row and its turns' (within a transaction; none is there)."""
    connection.execute(
        "INSERT INTO conversations (key, expires_at, turn_count, stored_bytes, space, session_id, "
        "updated_at, title) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            expires_at,
            len(turns),
            len(encode_session(list(turns)).encode("utf-8")),
            *space_and_id,
            updated_at,
            session_title([(turn.role, turn.content) for turn in turns]),
        ),
    )
    flags = comparable if comparable is not None else [1] * len(turns)
    connection.executemany(
        "INSERT INTO turns (key, seq, role, content, timestamp, comparable, id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (key, seq, turn.role, turn.content, turn.timestamp, flag, turn.id)
            for seq, (turn, flag) in enumerate(zip(turns, flags, strict=True))
        ),
    )


def split_key(key: str) -> tuple[str | None, str | None]:
    """A session key's key space (prefix and namespace) and session id, for a key whose space
    was not recorded: up to its first `session:`, the only reading this server's keys allow
    unless a key prefix holds `session:` itself. (None, None) for a key without one."""
    space, found, session_id = key.partition("session:")
    return (space, session_id) if found and session_id else (None, None)


def last_save(expires_at: int, ttl_seconds: int) -> int:
    """When a session that expires at `expires_at` was last saved, as near as its expiry tells:
    a TTL before it, and never later than now (a longer TTL, given when it was saved, would
    otherwise date it in the future)."""
    return min(expires_at - ttl_seconds * 1000, time.time_ns() // 1_000_000)


def _list_existing_sessions(connection: sqlite3.Connection, ttl_seconds: int) -> None:
    """Give sessions of layout 2 what lists them: their key space and id, their last save (when
    they expire, less the TTL: the closest to it the file knows), and their title."""
    rows = connection.execute("SELECT key, expires_at FROM conversations WHERE updated_at IS NULL").fetchall()
    for key, expires_at in rows:
        first = connection.execute(
            "SELECT role, content FROM turns WHERE key = ? ORDER BY seq LIMIT 50", (key,)
        ).fetchall()
        connection.execute(
            "UPDATE conversations SET space = ?, session_id = ?, updated_at = ?, title = ? WHERE key = ?",
            (*split_key(key), last_save(int(expires_at), ttl_seconds), session_title(first), key),
        )


def _migrate_legacy(connection: sqlite3.Connection, ttl_seconds: int) -> None:
    # As bytes: a 0.1.0 value may be a BLOB, or TEXT that is not UTF-8, which sqlite3 would
    # refuse to hand over as str (and its error would quote the chat).
    rows = connection.execute("SELECT key, CAST(value AS BLOB), expires_at FROM sessions").fetchall()
    for key, value, expires_at in rows:
        import_value(
            connection, str(key), bytes(value), int(expires_at), last_save(int(expires_at), ttl_seconds)
        )
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
