"""The PostgreSQL backend: the SQLite file's layout (a row per session, a row per turn) in the
`session_memory` schema of the database DATABASE_URL names, through a psycopg 3 connection pool.

A save, of one turn or many, is one call of the `append_turns` function (`memory.postgres_schema`):
one statement, one round trip, one transaction, under a lock on the session that writers in
every process take in turn. A read is one statement too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import psycopg
import psycopg.errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import TypeAdapter, ValidationError

from memory import errors
from memory.base_store import BaseStore
from memory.config import StoreConfig, redact_url
from memory.errors import (
    SessionMemoryError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
    delete_outdated,
    deleted_during_save,
    id_taken,
    not_a_session,
    session_full,
    too_slow,
)
from memory.index import ListPosition, key_space
from memory.models import BatchSaveResult, ChatTurn, SessionSummary, TurnOutcome
from memory.postgres_schema import prepare
from memory.rules import (
    DELETION_MARKER_SECONDS,
    PlannedSave,
    decode_session,
    encode_session,
    encode_turn,
    expiry_ms,
    id_suffix,
    now_ms,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.AsyncConnection[TupleRow]

VARIABLE = "DATABASE_URL"
# Connections each server keeps: enough for its concurrent calls; a save holds one for one
# round trip.
POOL_MIN = 1
POOL_MAX = 10
# The part of a call's deadline spent waiting for a pooled connection.
_POOL_WAIT_SHARE = 0.4
_PURGE_INTERVAL_MS = 60 * 60 * 1000
# Expired sessions purged per statement: each batch is short, and skips sessions being saved.
_PURGE_BATCH = 200

_APPEND = (
    "SELECT outcome, which, created, stamps, states, dropped FROM session_memory.append_turns("
    "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# One statement: what keeps a session unreadable (kind 0), or the live session's counts and
# its newest turns (kind 1, oldest first; LIMIT NULL is all of them).
_READ = (
    "SELECT 0, NULL::bigint, NULL::bigint, NULL::text, value, NULL::bigint, NULL::bytea, NULL::bigint "
    "FROM session_memory.unreadable_sessions WHERE key = %(key)s AND expires_at > %(now)s "
    "UNION ALL "
    "SELECT 1, c.turn_count, c.dropped, t.role, t.content, t.timestamp, t.id, t.seq "
    "FROM session_memory.conversations c LEFT JOIN LATERAL ("
    "SELECT seq, role, content, timestamp, id FROM session_memory.turns "
    "WHERE key = c.key ORDER BY seq DESC LIMIT %(last)s) t ON true "
    "WHERE c.key = %(key)s AND c.expires_at > %(now)s "
    "ORDER BY 1, 8"
)
_LIST = (
    "SELECT session_id, title, updated_at, expires_at FROM session_memory.conversations "
    "WHERE space = %(space)s AND expires_at > %(now)s "
    "AND (%(stamp)s::bigint IS NULL OR (updated_at, session_id) < (%(stamp)s, %(id)s::text)) "
    "AND (%(typed)s::text IS NULL OR starts_with(session_id, %(typed)s)) "
    "ORDER BY updated_at DESC, session_id DESC LIMIT %(limit)s"
)


@functools.cache
def _stored_turns() -> TypeAdapter[list[ChatTurn]]:
    return TypeAdapter(list[ChatTurn])


class PostgresStore(BaseStore):
    """Sessions in PostgreSQL, atomic across connections, processes and servers."""

    backend = "postgres"

    def __init__(self, config: StoreConfig, url: str) -> None:
        super().__init__(config)
        self._url = url
        self.what = f"PostgreSQL at {redact_url(url)}"
        self._location = redact_url(url)
        timeout = config.store_timeout_seconds
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            open=False,
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": max(2, int(timeout))},
            name="session-memory",
        )
        self._prepared = False
        self._prepare_lock = asyncio.Lock()
        self._secret: bytes | None = None
        self._next_purge_ms = 0
        self._purges: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, config: StoreConfig, url: str) -> PostgresStore:
        """The store, its pool filling in the background: an unreachable server shows in `check`
        and in each call, as it does for the other servers."""
        store = cls(config, url)
        try:
            await store._pool.open(wait=False)
        except psycopg.Error as exc:
            raise store._translate(exc) from None
        return store

    @property
    def location(self) -> str:
        return self._location

    async def aclose(self) -> None:
        for task in list(self._purges):
            task.cancel()
        for task in list(self._purges):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._pool.close()

    async def check(self, timeout_seconds: float | None = None) -> None:
        """Connect, create or migrate the layout if needed, and run a trivial query."""

        async def ping(connection: Connection) -> None:
            await connection.execute("SELECT 1 FROM session_memory.schema_version")

        await self._run(ping, seconds=timeout_seconds)

    # -- the operations ------------------------------------------------------------------------

    async def _read(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]:
        async def read(connection: Connection) -> list[tuple[Any, ...]]:
            # Binary: bytea comes as it is, not as hex text to decode.
            cursor = await connection.execute(_READ, {"key": key, "now": now_ms(), "last": last}, binary=True)
            return await cursor.fetchall()

        rows = await self._run(read)
        if not rows:
            return []
        if rows[0][0] == 0:
            decode_session(bytes(rows[0][4]), session_id)  # raises, saying where it fails
            return []
        _, turn_count, dropped = rows[0][:3]
        fields = [
            {
                "role": role,
                "content": content.decode("utf-8"),
                "timestamp": stamp,
                "id": None if turn_id is None else turn_id.decode("utf-8"),
            }
            for _, _, _, role, content, stamp, turn_id, _ in rows
            if role is not None
        ]
        try:
            # What this server stored passes the model's checks: pydantic-core makes the turns
            # in one call, in less than half the time of one model_construct per turn.
            turns = _stored_turns().validate_python(fields)
        except ValidationError:  # a turn imported from elsewhere, read as it is
            turns = [ChatTurn.model_construct(**turn) for turn in fields]
        if dropped and turns and len(turns) >= turn_count:  # the read reaches the session's start
            turns[0] = turns[0].model_copy(update={"dropped": int(dropped)})
        return turns

    async def _append(self, key: str, session_id: str, save: PlannedSave) -> BatchSaveResult:
        config = self.config
        now = now_ms()
        expires_at = expiry_ms(config, now)
        turns = save.turns
        parameters = (
            key,
            key_space(key, session_id),
            session_id,
            now,
            save.started_at,
            save.title,
            expires_at,
            config.max_session_bytes,
            config.when_full == "drop-oldest",
            [turn.role for turn in turns],
            [turn.content.encode("utf-8") for turn in turns],
            [turn.timestamp for turn in turns],
            [turn.mode == "keep" for turn in turns],
            [turn.id.encode("utf-8") for turn in turns],
            [len(turn.prefix.encode("utf-8")) + len(id_suffix(turn.id).encode("utf-8")) for turn in turns],
        )
        attempts = 0

        async def append(connection: Connection) -> tuple[Any, ...]:
            nonlocal attempts
            attempts += 1
            cursor = await connection.execute(_APPEND, parameters)
            row = await cursor.fetchone()
            if row is None:
                raise StoreError("PostgreSQL answered the save with no row")
            return row

        outcome, which, created, stamps, states, dropped = await self._run(append)
        if outcome == "not_a_session":
            raise not_a_session(session_id)
        if outcome == "session_full":
            raise session_full(session_id, config.max_session_bytes)
        if outcome == "deleted":
            raise deleted_during_save(session_id)
        if outcome == "id_taken":
            raise id_taken(turns[which].id, session_id)
        self._purge_if_due()
        # After a retry, a turn found by its id is the earlier attempt's own write.
        retried = attempts > 1
        return BatchSaveResult(
            session_id=session_id,
            id=save.id,
            new_session=bool(created) or (retried and states[0] == 2),
            turns=[
                TurnOutcome(timestamp=int(stamp), stored=state == 1 or retried)
                for stamp, state in zip(stamps, states, strict=True)
            ],
            expires_at=expires_at,
            dropped=int(dropped),
        )

    async def _delete(self, key: str, session_id: str) -> bool:
        started_at = now_ms()

        async def delete(connection: Connection) -> int:
            now = now_ms()
            cursor = await connection.execute(
                "SELECT session_memory.delete_session(%s, %s, %s, %s)",
                (key, started_at, now, now + DELETION_MARKER_SECONDS * 1000),
            )
            row = await cursor.fetchone()
            return 0 if row is None else int(row[0])

        deleted = await self._run(delete)
        if deleted == -1:
            raise delete_outdated(session_id)
        return deleted == 1

    async def _put(
        self, key: str, session_id: str, turns: Sequence[ChatTurn], expires_at: int, updated_at: int
    ) -> bool:
        async def put(connection: Connection) -> bool:
            async with connection.transaction():
                return await _put_rows(connection, key, session_id, turns, expires_at, updated_at)

        return await self._run(put)

    async def _list(
        self, space: str, live_after: int, after: ListPosition | None, limit: int
    ) -> tuple[list[SessionSummary], bool]:
        rows = await self._list_rows(space, after, None, limit + 1)
        sessions = [
            SessionSummary(session_id=session_id, title=title, updated_at=updated_at, expires_at=expires_at)
            for session_id, title, updated_at, expires_at in rows[:limit]
        ]
        return sessions, len(rows) > limit

    async def _ids_starting_with(self, space: str, live_after: int, typed: str, limit: int) -> list[str]:
        return [row[0] for row in await self._list_rows(space, None, typed, limit)]

    async def _list_rows(
        self, space: str, after: ListPosition | None, typed: str | None, limit: int
    ) -> list[tuple[Any, ...]]:
        parameters = {
            "space": space,
            "now": now_ms(),
            "stamp": None if after is None else after.updated_at,
            "id": None if after is None else after.session_id,
            "typed": typed,
            "limit": limit,
        }

        async def select(connection: Connection) -> list[tuple[Any, ...]]:
            cursor = await connection.execute(_LIST, parameters)
            return await cursor.fetchall()

        return await self._run(select)

    async def _cursor_secret(self) -> bytes:
        if self._secret is None:

            async def secret(connection: Connection) -> str:
                await connection.execute(
                    "INSERT INTO session_memory.secrets VALUES ('cursor', %s) ON CONFLICT (name) DO NOTHING",
                    (secrets.token_hex(32),),
                )
                cursor = await connection.execute(
                    "SELECT value FROM session_memory.secrets WHERE name = 'cursor'"
                )
                row = await cursor.fetchone()
                if row is None:
                    raise StoreError("PostgreSQL lost the cursor secret it was given")
                return str(row[0])

            self._secret = (await self._run(secret)).encode()
        return self._secret

    # -- the purge of expired rows ---------------------------------------------------------------

    def _purge_if_due(self) -> None:
        """Start a purge in the background at most once an hour: expired sessions are never
        returned (every query asks for live ones); this only gives their space back."""
        now = now_ms()
        if now < self._next_purge_ms or self._purges:
            return
        self._next_purge_ms = now + _PURGE_INTERVAL_MS
        task = asyncio.get_running_loop().create_task(self._purge())
        self._purges.add(task)
        task.add_done_callback(self._purges.discard)

    async def purge_finished(self) -> None:
        """Return once no purge runs in the background (for measurements that count statements)."""
        await asyncio.gather(*self._purges, return_exceptions=True)

    async def _purge(self) -> None:
        try:
            await self.purge_expired()
        except SessionMemoryError as exc:
            logger.info("the purge of expired sessions stopped: %s", exc)

    async def purge_expired(self) -> int:
        """Delete expired rows, a small batch per statement, skipping rows that a save holds
        (FOR UPDATE SKIP LOCKED): no save or delete ever waits for it. How many sessions went."""
        total = 0
        statements = (
            "WITH gone AS (DELETE FROM session_memory.conversations WHERE key IN ("
            "SELECT key FROM session_memory.conversations WHERE expires_at <= %(now)s "
            "LIMIT %(batch)s FOR UPDATE SKIP LOCKED) AND expires_at <= %(now)s RETURNING key), "
            "turns AS (DELETE FROM session_memory.turns WHERE key IN (SELECT key FROM gone)) "
            "SELECT count(*) FROM gone",
            "WITH gone AS (DELETE FROM session_memory.unreadable_sessions WHERE key IN ("
            "SELECT key FROM session_memory.unreadable_sessions WHERE expires_at <= %(now)s "
            "LIMIT %(batch)s FOR UPDATE SKIP LOCKED) RETURNING key) SELECT count(*) FROM gone",
            "WITH gone AS (DELETE FROM session_memory.deleted_sessions WHERE key IN ("
            "SELECT key FROM session_memory.deleted_sessions WHERE expires_at <= %(now)s "
            "LIMIT %(batch)s FOR UPDATE SKIP LOCKED) RETURNING key) SELECT count(*) FROM gone",
        )
        for index, statement in enumerate(statements):
            while True:

                async def batch(connection: Connection, statement: str = statement) -> int:
                    cursor = await connection.execute(statement, {"now": now_ms(), "batch": _PURGE_BATCH})
                    row = await cursor.fetchone()
                    return 0 if row is None else int(row[0])

                count = await self._run(batch)
                total += count if index == 0 else 0
                if count < _PURGE_BATCH:
                    break
        return total

    # -- connections, deadlines, retries and errors ----------------------------------------------

    async def _run(self, work: Callable[[Connection], Awaitable[T]], seconds: float | None = None) -> T:
        """`work` on a pooled connection within one deadline (the store timeout by default); a
        failure that means the server is unavailable is tried again, up to STORE_RETRIES times, as
        the Redis backends do: a save's retry finds an earlier attempt's turns by their ids."""
        seconds = self.config.store_timeout_seconds if seconds is None else seconds
        # The pool waits this long for a connection, so that a failed wait leaves time to find out
        # why and to try again.
        pool_wait = max(0.2, seconds * _POOL_WAIT_SHARE)
        try:
            async with asyncio.timeout(seconds):
                attempt = 0
                while True:
                    try:
                        await self._ready()
                        async with self._pool.connection(timeout=pool_wait) as connection:
                            return await work(connection)
                    except (psycopg.Error, PoolTimeout) as exc:
                        error = await self._diagnose(exc)
                        if (
                            not isinstance(error, StoreUnavailableError)
                            or attempt >= self.config.store_retries
                        ):
                            raise error from exc
                        logger.debug("retrying after %s", type(exc).__name__)
                    attempt += 1
                    await anyio.sleep(0.05 * 2**attempt)
                    # Connections to a server that restarted are broken: find them now.
                    await self._pool.check()
        except TimeoutError as exc:
            raise too_slow(self.backend, seconds) from exc

    async def _connect(self) -> Connection:
        """A connection of its own, outside the pool: its failure says why (the pool's says only
        that no connection came in time)."""
        return await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=max(2, int(self.config.store_timeout_seconds))
        )

    async def _ready(self) -> None:
        """Create or migrate the layout once, before the first query of this server."""
        if self._prepared:
            return
        async with self._prepare_lock:
            if self._prepared:
                return
            connection = await self._connect()
            try:
                await prepare(connection)
            finally:
                await connection.close()
            self._prepared = True

    async def _diagnose(self, exc: BaseException) -> SessionMemoryError:
        """The memory error `exc` means; for a wait for the pool, one direct attempt tells why
        (credentials, an address nobody listens on, TLS)."""
        if not isinstance(exc, PoolTimeout):
            return self._translate(exc)
        try:
            probe = await self._connect()
        except psycopg.Error as failure:
            return self._translate(failure)
        await probe.close()
        return StoreUnavailableError(f"{self.what} had no free connection in time; try again later")

    def _translate(self, exc: BaseException) -> SessionMemoryError:
        return translate(exc, self.what)


def translate(exc: BaseException, what: str) -> SessionMemoryError:
    """The memory error a psycopg exception means. Never the driver's text: it may quote the
    user name, the host's addresses or a value."""
    if isinstance(exc, SessionMemoryError):
        return exc
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return StoreSettingsError(f"{what} is a read-only replica: point {VARIABLE} at the primary")
    if isinstance(exc, (psycopg.errors.InvalidPassword, psycopg.errors.InvalidAuthorizationSpecification)):
        return _rejected(what)
    if isinstance(exc, psycopg.errors.InvalidCatalogName):
        return StoreSettingsError(f"{what}: the database {VARIABLE} names does not exist")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return StoreSettingsError(
            f"{what} refused a command for lack of privileges: the user in {VARIABLE} needs to "
            "create the session_memory schema (once) and read and write its tables"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StoreUnavailableError(f"{what} cancelled the command (a statement timeout); try again later")
    if isinstance(
        exc,
        (
            psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected,
            psycopg.errors.AdminShutdown,
            psycopg.errors.CrashShutdown,
            psycopg.errors.CannotConnectNow,
            psycopg.errors.TooManyConnections,
        ),
    ):
        return StoreUnavailableError(
            f"{what} could not run the command just now ({exc.sqlstate}); try again later"
        )
    if isinstance(exc, psycopg.OperationalError):
        return _connection_failed(exc, what)
    if isinstance(exc, psycopg.Error):
        return StoreError(f"{what} failed: {type(exc).__name__} (SQLSTATE {exc.sqlstate})")
    return StoreError(f"{what} failed: {type(exc).__name__}")


def _connection_failed(exc: psycopg.OperationalError, what: str) -> SessionMemoryError:
    """A connection that could not be made, or was lost: libpq says which only in its text."""
    text = str(exc).lower()
    if "password authentication failed" in text or "no password supplied" in text:
        return _rejected(what)
    if re.search(r'fatal: +role "[^"]*" does not exist', text):
        return _rejected(what)
    if "no pg_hba.conf entry" in text:
        return StoreAuthError(
            f"{what} does not accept this user from this host (pg_hba.conf): check {VARIABLE}"
        )
    if re.search(r'fatal: +database "[^"]*" does not exist', text):
        return StoreSettingsError(f"{what}: the database {VARIABLE} names does not exist")
    if "ssl" in text or "certificate" in text:
        if "server does not support ssl" in text:
            return StoreSettingsError(f"{what} does not speak TLS: remove sslmode=require from {VARIABLE}")
        return errors.tls_failed(what, VARIABLE)
    if "could not translate host name" in text or "name or service not known" in text:
        return errors.not_resolved(what, VARIABLE)
    if "connection refused" in text or "no such file or directory" in text:
        return errors.connection_refused(what, VARIABLE)
    if "timeout expired" in text or "timed out" in text:
        return errors.no_answer(what)
    return errors.unreachable(what, type(exc).__name__)


def _rejected(what: str) -> StoreAuthError:
    return StoreAuthError(f"{what} rejected the credentials: check the user name and password in {VARIABLE}")


async def _put_rows(
    connection: Connection,
    key: str,
    session_id: str,
    turns: Sequence[ChatTurn],
    expires_at: int,
    updated_at: int,
) -> bool:
    """Mirrors SQLiteStore._put_rows: the session whole, unless the key holds a live one."""
    now = now_ms()
    await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
    cursor = await connection.execute(
        "SELECT expires_at FROM session_memory.unreadable_sessions WHERE key = %s", (key,)
    )
    unreadable = await cursor.fetchone()
    if unreadable is not None:
        if unreadable[0] > now:
            return False  # a value kept aside as unreadable: left as it is
        await connection.execute("DELETE FROM session_memory.unreadable_sessions WHERE key = %s", (key,))
    cursor = await connection.execute(
        "SELECT expires_at FROM session_memory.conversations WHERE key = %s FOR UPDATE", (key,)
    )
    live = await cursor.fetchone()
    if live is not None and live[0] > now:
        return False
    await insert_session(
        connection, key, (key_space(key, session_id), session_id), turns, expires_at, updated_at
    )
    return True


async def insert_session(
    connection: Connection,
    key: str,
    space_and_id: tuple[str | None, str | None],
    turns: Sequence[ChatTurn],
    expires_at: int,
    updated_at: int,
    comparable: Sequence[bool] | None = None,
) -> None:
    """Replace whatever `key` holds by a whole session (within a transaction)."""
    from memory.index import session_title

    await connection.execute("DELETE FROM session_memory.conversations WHERE key = %s", (key,))
    await connection.execute("DELETE FROM session_memory.turns WHERE key = %s", (key,))
    await connection.execute(
        "INSERT INTO session_memory.conversations (key, space, session_id, expires_at, turn_count, "
        "stored_bytes, next_seq, updated_at, title) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            key,
            *space_and_id,
            expires_at,
            len(turns),
            len(encode_session(list(turns)).encode("utf-8")),
            len(turns),
            updated_at,
            session_title([(turn.role, turn.content) for turn in turns]),
        ),
    )
    flags = list(comparable) if comparable is not None else [True] * len(turns)
    plain = [
        ChatTurn.model_construct(role=turn.role, content=turn.content, timestamp=turn.timestamp, id=turn.id)
        for turn in turns
    ]
    await connection.execute(
        "INSERT INTO session_memory.turns (key, seq, role, content, timestamp, comparable, id, bytes) "
        "SELECT %s, n - 1, role, content, stamp, flag, id, size "
        "FROM unnest(%s::text[], %s::bytea[], %s::bigint[], %s::boolean[], %s::bytea[], %s::integer[]) "
        "WITH ORDINALITY AS t(role, content, stamp, flag, id, size, n)",
        (
            key,
            [turn.role for turn in turns],
            [turn.content.encode("utf-8") for turn in turns],
            [turn.timestamp for turn in turns],
            flags,
            [None if turn.id is None else turn.id.encode("utf-8") for turn in turns],
            [len(encode_turn(turn).encode("utf-8")) for turn in plain],
        ),
    )
