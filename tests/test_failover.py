"""A Redis Cluster primary killed under the store: what is acknowledged survives, and a save
caught by the failover is reported with its id and stored once by its retry.

Each test starts a cluster of its own (the session's shared one must keep its primaries).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis

from bench.failover.__main__ import QUICK
from bench.failover.rounds import run_round
from localservers.redis_cluster import RedisCluster, replicating
from localservers.redis_server import START_PATIENCE_SECONDS
from memory import NewTurn, SessionStore, StoreConfig, StoreUnavailableError, open_store, session_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    started = RedisCluster().start()
    yield started
    started.stop()


def settle(condition: Callable[[], bool]) -> None:
    """Wait for the cluster to get somewhere (a patience, not a bound on how long it may take)."""
    deadline = time.monotonic() + START_PATIENCE_SECONDS
    while not _holds(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster did not get there within {START_PATIENCE_SECONDS} s")
        time.sleep(0.05)


def _holds(condition: Callable[[], bool]) -> bool:
    try:
        return condition()
    except (OSError, RuntimeError, StopIteration):
        return False


def holds(replica: int, key: str) -> bool:
    """Whether the replica on `replica` has `key` yet (replication is asynchronous)."""
    with redis.Redis(port=replica, single_connection_client=True) as client:
        client.execute_command("READONLY")
        return bool(client.exists(key) == 1)


PREFIX = f"failover-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def cluster_store(
    cluster: RedisCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SessionStore]:
    """A store on `cluster` that does not retry, so that a failover reaches the caller."""
    config = StoreConfig(
        redis_url=cluster.url,
        sqlite_path=tmp_path / "unused.sqlite3",
        key_prefix=PREFIX,
        store_timeout_seconds=5.0,
        store_retries=0,
        redis_replica_acks=getattr(request, "param", 0),
    )
    async with open_store(config) as store:
        yield store


async def retried(store: SessionStore, session: str, content: str, call_id: str) -> None:
    """The same save, with the same id, until the store takes it (the cluster may still settle)."""
    deadline = time.monotonic() + START_PATIENCE_SECONDS
    while True:
        try:
            await store.save_turns(session, [NewTurn(role="user", content=content)], call_id=call_id)
            return
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.1)


async def test_the_quick_failover_with_a_replica_ack_loses_no_acknowledged_turn(tmp_path: Path) -> None:
    done = await run_round(QUICK, acks=1, number=1, deadline=1.0, logs=tmp_path)
    assert done.timeline.error is None
    assert done.tally.acknowledged > 0
    assert (done.tally.lost, done.tally.doubled, done.tally.reordered) == (0, 0, 0)
    assert done.replica_was_primary


async def test_a_save_during_a_failover_is_unavailable_with_its_id_and_stored_once_by_its_retry(
    cluster: RedisCluster, cluster_store: SessionStore
) -> None:
    session = "caught-by-the-failover"
    await cluster_store.save_turns(session, [NewTurn(role="user", content="before")])
    key = session_key(PREFIX, session)
    victim = cluster.primary_for(key)
    replica = cluster.replica_of(victim)
    settle(lambda: holds(replica, key))
    cluster.kill(victim)

    with pytest.raises(StoreUnavailableError) as caught:
        await cluster_store.save_turns(session, [NewTurn(role="user", content="during")], call_id="save-1")
    assert caught.value.save_id == "save-1"
    assert 'retry the same call with id "save-1"' in str(caught.value)

    settle(lambda: cluster.role(replica) == "master")
    await retried(cluster_store, session, "during", "save-1")
    turns = await cluster_store.get_session(session)
    assert [turn.content for turn in turns] == ["before", "during"]
    assert turns[1].id == "save-1"


@pytest.mark.parametrize("cluster_store", [1], indirect=True)
async def test_a_save_no_replica_acknowledged_is_unavailable_with_its_id_and_stored_once_by_its_retry(
    cluster: RedisCluster, cluster_store: SessionStore
) -> None:
    """With REDIS_REPLICA_ACKS=1, the replica that took over has no replica of its own until the
    killed node is back: a save is stored on it, not acknowledged, and its retry finds it."""
    session = "stored-but-not-replicated"
    await retried(cluster_store, session, "before", "save-1")  # acknowledged by the replica
    victim = cluster.primary_for(session_key(PREFIX, session))
    replica = cluster.replica_of(victim)
    cluster.kill(victim)
    settle(lambda: cluster.role(replica) == "master" and cluster.is_ok())

    async def attempt() -> StoreUnavailableError:
        with pytest.raises(StoreUnavailableError) as caught:
            await cluster_store.save_turns(session, [NewTurn(role="user", content="after")], call_id="save-2")
        return caught.value

    error = await attempt()
    deadline = time.monotonic() + START_PATIENCE_SECONDS
    while "replicas" not in str(error) and time.monotonic() < deadline:
        # The client may first meet the failover itself (a slot map it has yet to read again).
        await anyio.sleep(0.1)
        error = await attempt()
    assert error.save_id == "save-2"
    assert "only 0 of the 1 replicas" in str(error)
    assert 'retry the same call with id "save-2"' in str(error)
    stored = await cluster_store.get_session(session)
    assert [turn.content for turn in stored] == ["before", "after"]

    cluster.restart(victim)
    settle(lambda: cluster.role(victim) == "slave" and replicating(victim))
    await retried(cluster_store, session, "after", "save-2")
    turns = await cluster_store.get_session(session)
    assert [turn.content for turn in turns] == ["before", "after"]
