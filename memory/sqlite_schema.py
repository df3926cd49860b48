"""The SQLite layout: one row per turn, so that a save and a read of the newest turns cost
the same at 10 and at 5,000 turns; and the migration from 0.1.0's one-value-per-session table."""

from __future__ import annotations

import logging
import sqlite3

from memory.codec import decode_session, encode_session, encode_turn
from memory.errors import CorruptSessionError

logger = logging.getLogger(__name__)

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
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have done it while this one waited for the lock.
        if _version(connection) != LAYOUT_VERSION:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            if _has_legacy_table(connection):
                _migrate_legacy(connection)
            connection.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


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
