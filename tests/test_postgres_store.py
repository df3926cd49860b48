"""What only the PostgreSQL backend does: its layout and migrations, its purge, and what its
failures mean (credentials, an unreachable server, a read-only replica, a connection lost mid-call).
The behaviour every store shares runs on it through the tests parametrized over backends."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from localservers.delay_proxy import delayed
from localservers.postgres_server import PostgresServer
from localservers.redis_server import free_port
from memory import (
    ChatTurn,
    NewTurn,
    StoreAuthError,
    StoreConfig,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
    now_ms,
    open_store,
    postgres_schema,
)
from memory.postgres_store import PostgresStore

pytestmark = pytest.mark.anyio


def config(url: str, **overrides: object) -> StoreConfig:
    fields: dict[str, object] = {"database_url": url, "store_timeout_seconds": 5.0, "key_prefix": key()}
    return StoreConfig(**fields | overrides)


def key() -> str:
    return f"pg-{uuid.uuid4().hex[:12]}:"


def admin(server: PostgresServer, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.url.rsplit("/", 1)[0] + f"/{database}", autocommit=True)


@pytest.fixture
def fresh_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a database of its own, with no layout yet."""
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    with admin(postgres_server) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    with admin(postgres_server) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
async def pg_store(postgres_server: PostgresServer) -> AsyncIterator[PostgresStore]:
    async with open_store(config(postgres_server.url)) as store:
        assert isinstance(store, PostgresStore)
        yield store


# -- the layout --------------------------------------------------------------------------------


async def test_the_layout_is_created_on_first_use_and_its_version_recorded(fresh_database: str) -> None:
    async with open_store(config(fresh_database)) as store:
        await store.check()
    with psycopg.connect(fresh_database) as connection:
        row = connection.execute("SELECT version FROM session_memory.schema_version").fetchall()
    assert row == [(postgres_schema.LAYOUT_VERSION,)]


async def test_two_servers_starting_at_once_create_the_layout_once(fresh_database: str) -> None:
    stores = [await open_store(config(fresh_database)) for _ in range(4)]
    try:
        await asyncio.gather(*(store.check() for store in stores))
        await asyncio.gather(*(store.save_turn("s", NewTurn(role="user", content="x")) for store in stores))
    finally:
        for store in stores:
            await store.aclose()
    with psycopg.connect(fresh_database) as connection:
        assert connection.execute("SELECT count(*) FROM session_memory.schema_version").fetchone() == (1,)


async def test_a_database_of_a_later_layout_is_refused(fresh_database: str) -> None:
    async with open_store(config(fresh_database)) as store:
        await store.check()
    with psycopg.connect(fresh_database, autocommit=True) as connection:
        connection.execute("UPDATE session_memory.schema_version SET version = 99")
    async with open_store(config(fresh_database)) as store:
        with pytest.raises(StoreError, match="has layout 99, written by a later version"):
            await store.check()


async def test_a_migration_killed_midway_leaves_the_previous_layout_and_data_whole(
    fresh_database: str, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(config(fresh_database, key_prefix="")) as store:
        await store.save_turn("kept", NewTurn(role="user", content="before the migration", timestamp=1))
    # Layout 2: a change of the tables, then a long statement, during which the server process
    # running the migration is killed.
    step = (
        "ALTER TABLE session_memory.turns ADD COLUMN extra text; UPDATE session_memory.turns SET extra = 'x';"
    )
    monkeypatch.setattr(postgres_schema, "LAYOUT_VERSION", 2)
    monkeypatch.setitem(postgres_schema.LAYOUT_STEPS, 2, step + " SELECT pg_sleep(60);")
    async with open_store(config(fresh_database, key_prefix="", store_retries=0)) as store:
        migrating = asyncio.ensure_future(store.check(timeout_seconds=30))
        await _kill_when_running(postgres_server, "%pg_sleep(60)%")
        with pytest.raises(StoreUnavailableError):
            await migrating
    await _recovered(postgres_server)
    with psycopg.connect(fresh_database) as connection:
        assert connection.execute("SELECT version FROM session_memory.schema_version").fetchone() == (1,)
        columns = connection.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'session_memory' AND table_name = 'turns' AND column_name = 'extra'"
        ).fetchall()
        assert columns == []
    # The next start runs the migration again, whole; the data survive it.
    monkeypatch.setitem(postgres_schema.LAYOUT_STEPS, 2, step)
    async with open_store(config(fresh_database, key_prefix="")) as store:
        assert [t.content for t in await store.get_session("kept")] == ["before the migration"]
    with psycopg.connect(fresh_database) as connection:
        assert connection.execute("SELECT version FROM session_memory.schema_version").fetchone() == (2,)
        assert connection.execute("SELECT extra FROM session_memory.turns").fetchall() == [("x",)]


async def test_a_save_and_a_read_are_one_round_trip_each(postgres_server: PostgresServer) -> None:
    with delayed(postgres_server.port, 0.0) as proxy:
        url = postgres_server.url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
        async with open_store(config(url)) as store:
            # Connected, and past psycopg's threshold for prepared statements on every pooled
            # connection: the first save's purge takes a second one, and the pool hands them out
            # in turn, so each statement must have run 5 times on each (then it is prepared, which
            # costs a round trip once per connection).
            for i in range(2 * 6):
                await store.save_turn("warm", NewTurn(role="user", content=f"w{i}"))
                await store.get_session("warm", 5)
            assert isinstance(store, PostgresStore)
            await store.purge_finished()  # its statements go through the proxy too
            before = proxy.round_trips
            await store.save_turns("trips", [NewTurn(role="user", content=f"t{i}") for i in range(20)])
            saved = proxy.round_trips
            assert len(await store.get_session("trips", last=5)) == 5
            assert (saved - before, proxy.round_trips - saved) == (1, 1)


# -- the purge ---------------------------------------------------------------------------------


async def test_the_purge_removes_expired_sessions_and_skips_one_being_saved(
    pg_store: PostgresStore, postgres_server: PostgresServer
) -> None:
    prefix = pg_store.config.key_prefix
    for name in ("old-1", "old-2", "held"):
        await pg_store.save_turn(name, NewTurn(role="user", content=name))
    with admin(postgres_server) as connection:
        connection.execute(
            "UPDATE session_memory.conversations SET expires_at = 1 WHERE key LIKE %s", (prefix + "%",)
        )
    # Another connection holds the row of `held`, as a save under way would.
    with admin(postgres_server) as holder:
        holder.autocommit = False
        holder.execute(
            "SELECT 1 FROM session_memory.conversations WHERE key = %s FOR UPDATE", (f"{prefix}session:held",)
        )
        await asyncio.wait_for(pg_store.purge_expired(), timeout=5)  # does not wait for the lock
        holder.rollback()
    with admin(postgres_server) as connection:
        left = connection.execute(
            "SELECT key FROM session_memory.conversations WHERE key LIKE %s", (prefix + "%",)
        ).fetchall()
        turns = connection.execute(
            "SELECT key FROM session_memory.turns WHERE key LIKE %s", (prefix + "%",)
        ).fetchall()
    assert left == [(f"{prefix}session:held",)]
    assert turns == [(f"{prefix}session:held",)]
    assert await pg_store.get_session("held") == []  # expired: never read, purged or not


# -- failures ----------------------------------------------------------------------------------


async def test_wrong_credentials_are_an_auth_error_naming_database_url(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.url.replace(postgres_server.password, "not-the-password")
    async with open_store(config(url)) as store:
        with pytest.raises(StoreAuthError, match=r"rejected the credentials.*DATABASE_URL") as caught:
            await store.check()
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in store.location


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        ("database", "the database DATABASE_URL names does not exist"),
        ("user", "rejected the credentials"),
        ("tls", "does not speak TLS: remove sslmode=require"),
    ],
)
async def test_a_url_that_cannot_work_is_a_setting_to_fix_without_its_password(
    postgres_server: PostgresServer, wrong: str, expected: str
) -> None:
    base, database = postgres_server.url.rsplit("/", 1)
    url = {
        "database": f"{base}/no_such_database",
        "user": postgres_server.url.replace("postgresql://postgres:", "postgresql://nobody:"),
        "tls": f"{base}/{database}?sslmode=require",
    }[wrong]
    async with open_store(config(url)) as store:
        with pytest.raises(StoreSettingsError, match=expected) as caught:
            await store.check()
    assert postgres_server.password not in str(caught.value)


async def test_nothing_listening_is_unavailable_and_names_database_url() -> None:
    url = f"postgresql://app:hunter2@127.0.0.1:{free_port()}/memory"
    async with open_store(config(url, store_retries=0)) as store:
        with pytest.raises(StoreUnavailableError, match=r"refused the connection.*DATABASE_URL") as caught:
            await store.check()
    assert "hunter2" not in str(caught.value)


async def test_a_read_only_server_is_a_setting_to_fix(
    fresh_database: str, postgres_server: PostgresServer
) -> None:
    async with open_store(config(fresh_database)) as store:
        await store.check()
    name = fresh_database.rsplit("/", 1)[1]
    with admin(postgres_server) as connection:
        connection.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    async with open_store(config(fresh_database)) as store:
        with pytest.raises(StoreSettingsError, match="read-only replica: point DATABASE_URL at the primary"):
            await store.save_turn("s", NewTurn(role="user", content="x"))


async def test_a_connection_lost_mid_save_is_unavailable_with_the_retry_id(
    postgres_server: PostgresServer,
) -> None:
    settings = config(postgres_server.url, store_retries=0)
    async with open_store(settings) as store:
        await store.check()
        session_key = f"{settings.key_prefix}session:lost"
        with admin(postgres_server) as holder:
            # Hold the session's lock, so that the save waits inside its statement.
            holder.execute("BEGIN")
            holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (session_key,))
            save = asyncio.ensure_future(
                store.save_turn("lost", NewTurn(role="user", content="x", id="save-7"))
            )
            await _terminate_when_waiting(postgres_server)
            with pytest.raises(StoreUnavailableError, match='retry the same call with id "save-7"'):
                await save
            holder.execute("ROLLBACK")
        retried = await store.save_turn("lost", NewTurn(role="user", content="x", id="save-7"))
        again = await store.save_turn("lost", NewTurn(role="user", content="x", id="save-7"))
        assert (retried.stored, again.stored) == (True, False)
        assert [t.content for t in await store.get_session("lost")] == ["x"]


async def test_a_lost_connection_is_retried_transparently(postgres_server: PostgresServer) -> None:
    async with open_store(config(postgres_server.url, store_retries=2)) as store:
        await store.save_turn("r", NewTurn(role="user", content="a"))
        with admin(postgres_server) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend'"
            )
        await store.save_turn("r", NewTurn(role="user", content="b"))
        assert [t.content for t in await store.get_session("r")] == ["a", "b"]


async def _kill_when_running(server: PostgresServer, query: str) -> None:
    """Kill the server process running `query` (SIGKILL: as a crash of that backend)."""
    for _ in range(200):
        with admin(server) as connection:
            row = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
                "AND pid <> pg_backend_pid()",
                (query,),
            ).fetchone()
        if row is not None:
            # A backend that dies this way makes PostgreSQL end every session and recover, as
            # after a crash; pg_terminate_backend would end it cleanly instead.
            os.kill(int(row[0]), signal.SIGKILL)  # type: ignore[call-overload]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no statement like {query} ran")


async def _recovered(server: PostgresServer) -> None:
    """Return once the server, recovering from a crashed backend, takes connections again."""
    for _ in range(600):
        try:
            admin(server).close()
            return
        except psycopg.OperationalError:
            await asyncio.sleep(0.05)
    raise AssertionError("the server did not recover within 30 s")


async def _terminate_when_waiting(server: PostgresServer) -> None:
    """End the connection of the save that waits for the session's lock."""
    for _ in range(200):
        with admin(server) as connection:
            ended = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE %s",
                ("%append_turns%",),
            ).fetchall()
        if ended:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the save never waited for the session's lock")


# -- a restart under load ----------------------------------------------------------------------

WRITERS = 5
SAVES_PER_WRITER = 60


async def test_a_restart_mid_load_loses_no_acknowledged_save_and_a_retry_stores_once(
    postgres_server: PostgresServer,
) -> None:
    settings = config(postgres_server.url, store_retries=0, store_timeout_seconds=3.0)
    acknowledged: list[str] = []
    failed: dict[str, StoreUnavailableError] = {}
    under_way, restarted = asyncio.Event(), asyncio.Event()
    acknowledged_after_restart = 0

    async with open_store(settings) as store:
        await store.check()

        async def writer(number: int) -> None:
            nonlocal acknowledged_after_restart
            for index in range(SAVES_PER_WRITER):
                turn_id = f"w{number}-{index}"
                try:
                    await store.save_turn("load", NewTurn(role="user", content=turn_id, id=turn_id))
                except StoreUnavailableError as exc:
                    failed[turn_id] = exc
                else:
                    acknowledged.append(turn_id)
                    if len(acknowledged) >= 20:
                        under_way.set()
                    acknowledged_after_restart += restarted.is_set()
                await asyncio.sleep(0.01)

        async def restart() -> None:
            await under_way.wait()
            try:
                # As a crash: no clean shutdown, sessions cut mid-statement.
                await asyncio.to_thread(postgres_server.pause, "immediate")
            finally:
                await asyncio.to_thread(postgres_server.resume)
            restarted.set()

        await asyncio.gather(restart(), *(writer(number) for number in range(WRITERS)))

        assert failed, "no save failed: the restart did not happen under load"
        assert acknowledged_after_restart, "no save was acknowledged after the restart"
        for turn_id, error in failed.items():
            assert error.save_id == turn_id
            assert f'retry the same call with id "{turn_id}"' in str(error)
        stored = Counter(turn.content for turn in await store.get_session("load"))
        assert all(stored[turn_id] == 1 for turn_id in acknowledged), (
            "an acknowledged save is missing or doubled"
        )
        assert all(stored[turn_id] <= 1 for turn_id in failed), "an unacknowledged save was stored twice"

        for turn_id in failed:
            retried = await store.save_turn("load", NewTurn(role="user", content=turn_id, id=turn_id))
            # Stored by this retry, or found: the failed attempt had reached the database.
            assert retried.stored == (stored[turn_id] == 0)
        stored = Counter(turn.content for turn in await store.get_session("load"))
        assert stored == Counter(acknowledged) + Counter(failed.keys())


async def test_text_postgres_cannot_hold_is_stored_and_read_back(pg_store: PostgresStore) -> None:
    # U+0000 in a message, and in an id imported from elsewhere: PostgreSQL's text refuses it.
    turns = [
        ChatTurn(role="user", content="a\x00b", timestamp=1, id="x\x00y"),
        ChatTurn(role="assistant", content="ok", timestamp=2),
    ]
    assert await pg_store.put_session("nul", turns, now_ms() + 60_000) == "written"
    assert await pg_store.get_session("nul") == turns
    saved = await pg_store.save_turn("nul", NewTurn(role="user", content="c\x00"))
    assert [t.content for t in await pg_store.get_session("nul", last=1)] == ["c\x00"]
    assert saved.stored
