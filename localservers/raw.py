"""Direct access to what a backend stored, bypassing the memory layer."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol

import psycopg
import redis

from memory import ChatTurn, CorruptSessionError
from memory.index import session_title
from memory.rules import decode_session, encode_session, encode_turn, found_as_stored
from memory.sqlite_file import import_value, split_key


class RawAccess(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes | str, ttl_seconds: int = 604800) -> None: ...
    def ttl_ms(self, key: str) -> int: ...
    def expire_now(self, key: str) -> None:
        """Let `key`'s time to live run out now, as if its TTL had passed."""

    def close(self) -> None:
        """Let go of what it holds open."""


class RedisRaw:
    """Closed by its user: a client left to the garbage collector closes its socket whenever
    a collection happens to run, and warns then, in whatever test is running."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RedisRaw:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(self, key: str) -> bytes | None:
        value = self.client.get(key)
        assert value is None or isinstance(value, bytes)
        return value

    def set(self, key: str, value: bytes | str, ttl_seconds: int = 604800) -> None:
        self.client.set(key, value, ex=ttl_seconds)

    def ttl_ms(self, key: str) -> int:
        ttl: int = self.client.pttl(key)
        return ttl

    def expire_now(self, key: str) -> None:
        # PEXPIRE 1 rather than 0: a non-positive TTL deletes the key instead of expiring it.
        self.client.pexpire(key, 1)
        while self.client.pttl(key) != -2:
            time.sleep(0.001)

    def billed_commands(self) -> int:
        """Commands the server has run since the last reset, as Upstash would bill them."""
        stats = self.client.info("commandstats")
        return sum(
            int(entry["calls"])
            for name, entry in stats.items()
            if not name.startswith(("cmdstat_info", "cmdstat_config"))
        )

    def reset_billing(self) -> None:
        self.client.config_resetstat()


class ClusterRaw(RedisRaw):
    """A Redis Cluster's keys, each read from the node that serves it."""

    def __init__(self, port: int) -> None:
        self.client = redis.RedisCluster(host="127.0.0.1", port=port)  # type: ignore[assignment]


class SQLiteRaw:
    """A session as the JSON text the other backends would hold: rebuilt from its rows on
    `get`, imported as the 0.1.0 migration imports it on `set`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def close(self) -> None:
        pass  # each call opens and closes its own connection

    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        # closing(): sqlite3's own context manager ends a transaction but leaves the file open.
        return contextlib.closing(sqlite3.connect(self.path, isolation_level=None))

    def get(self, key: str) -> bytes | None:
        with self._connect() as connection:
            unreadable = connection.execute(
                "SELECT CAST(value AS BLOB) FROM unreadable_sessions WHERE key = ?", (key,)
            ).fetchone()
            if unreadable is not None:
                return bytes(unreadable[0])
            if not connection.execute("SELECT 1 FROM conversations WHERE key = ?", (key,)).fetchone():
                return None
            rows = connection.execute(
                "SELECT role, content, timestamp, id FROM turns WHERE key = ? ORDER BY seq", (key,)
            ).fetchall()
        turns = [ChatTurn(role=role, content=content, timestamp=ts, id=id) for role, content, ts, id in rows]
        return encode_session(turns).encode()

    def set(self, key: str, value: bytes | str, ttl_seconds: int = 604800) -> None:
        expires_at = time.time_ns() // 1_000_000 + ttl_seconds * 1000
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            for table in ("conversations", "turns", "unreadable_sessions"):
                connection.execute(f"DELETE FROM {table} WHERE key = ?", (key,))
            import_value(connection, key, value, expires_at, updated_at=time.time_ns() // 1_000_000)
            connection.execute("COMMIT")

    def expire_now(self, key: str) -> None:
        past = time.time_ns() // 1_000_000 - 1
        with self._connect() as connection:
            for table in ("conversations", "unreadable_sessions"):
                connection.execute(f"UPDATE {table} SET expires_at = ? WHERE key = ?", (past, key))

    def ttl_ms(self, key: str) -> int:
        with self._connect() as connection:
            row = connection.execute(
                "SELECT expires_at FROM conversations WHERE key = ? "
                "UNION ALL SELECT expires_at FROM unreadable_sessions WHERE key = ?",
                (key, key),
            ).fetchone()
        return -2 if row is None else int(row[0]) - time.time_ns() // 1_000_000


class PostgresRaw:
    """A session as the JSON text the Redis backends would hold, as SQLiteRaw gives it, from the
    PostgreSQL tables."""

    def __init__(self, url: str) -> None:
        self.url = url

    def close(self) -> None:
        pass  # each call opens and closes its own connection

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    def get(self, key: str) -> bytes | None:
        with self._connect() as connection:
            unreadable = connection.execute(
                "SELECT value FROM session_memory.unreadable_sessions WHERE key = %s", (key,)
            ).fetchone()
            if unreadable is not None:
                return bytes(unreadable[0])
            if not connection.execute(
                "SELECT 1 FROM session_memory.conversations WHERE key = %s", (key,)
            ).fetchone():
                return None
            rows = connection.execute(
                "SELECT role, content, timestamp, id FROM session_memory.turns WHERE key = %s ORDER BY seq",
                (key,),
            ).fetchall()
        turns = [
            ChatTurn(
                role=role,
                content=bytes(content).decode(),
                timestamp=ts,
                id=None if id is None else bytes(id).decode(),
            )
            for role, content, ts, id in rows
        ]
        return encode_session(turns).encode()

    def set(self, key: str, value: bytes | str, ttl_seconds: int = 604800) -> None:
        """Imported as the SQLite file imports a value: a session when it reads as one, else kept aside."""
        now = time.time_ns() // 1_000_000
        expires_at = now + ttl_seconds * 1000
        with self._connect() as connection, connection.transaction():
            for table in ("conversations", "turns", "unreadable_sessions"):
                connection.execute(f"DELETE FROM session_memory.{table} WHERE key = %s", (key,))
            try:
                turns = decode_session(value, key)
            except CorruptSessionError:
                raw = value.encode() if isinstance(value, str) else value
                connection.execute(
                    "INSERT INTO session_memory.unreadable_sessions VALUES (%s, %s, %s)",
                    (key, raw, expires_at),
                )
                return
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            space, session_id = split_key(key)
            connection.execute(
                "INSERT INTO session_memory.conversations (key, space, session_id, expires_at, turn_count, "
                "stored_bytes, next_seq, updated_at, title) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    key,
                    space,
                    session_id,
                    expires_at,
                    len(turns),
                    len(encode_session(turns).encode()),
                    len(turns),
                    now,
                    session_title([(turn.role, turn.content) for turn in turns]),
                ),
            )
            for seq, turn in enumerate(turns):
                plain = ChatTurn.model_construct(
                    role=turn.role, content=turn.content, timestamp=turn.timestamp, id=turn.id
                )
                connection.execute(
                    "INSERT INTO session_memory.turns (key, seq, role, content, timestamp, comparable, "
                    "id, bytes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        key,
                        seq,
                        turn.role,
                        turn.content.encode(),
                        turn.timestamp,
                        found_as_stored(turn, text),
                        None if turn.id is None else turn.id.encode(),
                        len(encode_turn(plain).encode()),
                    ),
                )

    def expire_now(self, key: str) -> None:
        past = time.time_ns() // 1_000_000 - 1
        with self._connect() as connection:
            for table in ("conversations", "unreadable_sessions"):
                connection.execute(
                    f"UPDATE session_memory.{table} SET expires_at = %s WHERE key = %s", (past, key)
                )

    def ttl_ms(self, key: str) -> int:
        with self._connect() as connection:
            row = connection.execute(
                "SELECT expires_at FROM session_memory.conversations WHERE key = %s "
                "UNION ALL SELECT expires_at FROM session_memory.unreadable_sessions WHERE key = %s",
                (key, key),
            ).fetchone()
        return -2 if row is None else int(row[0]) - time.time_ns() // 1_000_000
