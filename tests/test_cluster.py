"""The Redis backend on a Redis Cluster: what differs from one node. Sessions spread over every
primary, the session index and deletion markers share the slots their scripts need, a node that
lost its scripts gets them again, a cluster missing a shard is reported, replicas are waited for.

The store contract, the oracle and the race tests run on the cluster through the `backend`
parameter; this file is the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import pytest
import redis
from mcp import Client, StdioServerParameters
from pydantic import ValidationError
from redis.crc import key_slot

from localservers.processes import CONSOLE_SCRIPT, child_env
from localservers.raw import ClusterRaw
from localservers.redis_cluster import SLOTS, RedisCluster, cluster_info, command
from localservers.redis_server import RedisServer
from memory import (
    ConfigurationError,
    InvalidSessionIdError,
    NewTurn,
    StoreAuthError,
    StoreConfig,
    StoreSettingsError,
    StoreUnavailableError,
    open_store,
)
from memory.index import index_keys
from memory.redis_store import RedisStore
from memory.rules import deletion_marker_key, session_key
from tests.conftest import STEADY_NODE_TIMEOUT_MS, SettingsFactory
from tests.support.results import structured

pytestmark = pytest.mark.anyio


def keys_per_primary(cluster: RedisCluster, pattern: str) -> dict[int, int]:
    counts = {}
    for port in cluster.primary_ports():
        with redis.Redis(port=port) as node:
            counts[port] = len(node.keys(pattern))
    return counts


async def test_the_console_script_serves_100_sessions_spread_over_every_primary(
    redis_cluster: RedisCluster, key_prefix: str
) -> None:
    env = child_env(REDIS_URL=redis_cluster.url, KEY_PREFIX=key_prefix)
    async with Client(StdioServerParameters(command=CONSOLE_SCRIPT, env=env)) as client:
        for n in range(100):
            turns = [
                {"role": "user", "content": f"question {n}"},
                {"role": "assistant", "content": f"answer {n}"},
            ]
            structured(await client.call_tool("save_turns", {"session_id": f"s{n}", "turns": turns}))
        for n in range(100):
            read = structured(await client.call_tool("get_session", {"session_id": f"s{n}", "last": 1}))
            assert [turn["content"] for turn in read["turns"]] == [f"answer {n}"]
        page = structured(await client.call_tool("list_sessions", {"limit": 100}))
        assert sorted(s["session_id"] for s in page["sessions"]) == sorted(f"s{n}" for n in range(100))
        assert {s["title"] for s in page["sessions"]} == {f"question {n}" for n in range(100)}
        for n in range(0, 100, 2):
            assert structured(await client.call_tool("delete_session", {"session_id": f"s{n}"}))["deleted"]
        page = structured(await client.call_tool("list_sessions", {"limit": 100}))
        assert sorted(s["session_id"] for s in page["sessions"]) == sorted(f"s{n}" for n in range(1, 100, 2))
    spread = keys_per_primary(redis_cluster, f"{key_prefix}session:*")
    assert len(spread) == 3
    assert all(count > 0 for count in spread.values()), spread
    assert sum(spread.values()) == 50


async def test_ten_concurrent_writers_into_one_session_through_the_console_script_lose_nothing(
    redis_cluster: RedisCluster, key_prefix: str
) -> None:
    env = child_env(REDIS_URL=redis_cluster.url, KEY_PREFIX=key_prefix)

    async def write(client: Client, writer: int) -> None:
        for i in range(20):
            arguments = {"session_id": "shared", "role": "user", "content": f"w{writer}-t{i}"}
            structured(await client.call_tool("save_turn", arguments))

    async with Client(StdioServerParameters(command=CONSOLE_SCRIPT, env=env)) as client:
        async with anyio.create_task_group() as group:
            for writer in range(10):
                group.start_soon(write, client, writer)
        turns = structured(await client.call_tool("get_session", {"session_id": "shared"}))["turns"]
    contents = [turn["content"] for turn in turns]
    assert len(contents) == 200
    for writer in range(10):
        assert [c for c in contents if c.startswith(f"w{writer}-")] == [f"w{writer}-t{i}" for i in range(20)]


@pytest.mark.parametrize("space", ["", "app:", "app:client:acme%20co:", "{tenant}:", "a{b:", "x}y{z:"])
def test_the_index_keys_of_a_key_space_share_one_slot_on_a_cluster(space: str) -> None:
    index, titles = index_keys(space, cluster=True)
    assert key_slot(index.encode()) == key_slot(titles.encode())


@pytest.mark.parametrize("session_id", ["plain", "{tagged}", "a{b}c", "x{y", "ünïcode-😀"])
def test_a_session_and_its_deletion_marker_share_one_slot(session_id: str) -> None:
    key = session_key("p:", session_id)
    assert key_slot(key.encode()) == key_slot(deletion_marker_key(key).encode())


async def test_an_id_whose_marker_cannot_share_its_slot_is_refused_on_a_cluster_only(
    make_settings: SettingsFactory,
) -> None:
    async with open_store(make_settings("cluster")) as store:
        with pytest.raises(InvalidSessionIdError, match=r"needs a '\{' before it"):
            await store.save_turn("a}b", NewTurn(role="user", content="hi"))
        assert await store.get_session("a}b") == []
    async with open_store(make_settings("redis")) as store:
        await store.save_turn("a}b", NewTurn(role="user", content="hi"))
        assert [turn.content for turn in await store.get_session("a}b")] == ["hi"]


async def test_nodes_that_lost_their_scripts_get_them_again(
    make_settings: SettingsFactory, redis_cluster: RedisCluster
) -> None:
    async with open_store(make_settings("cluster")) as store:
        await store.save_turn("warm", NewTurn(role="user", content="the scripts are cached now"))
        for port in redis_cluster.primary_ports():
            with redis.Redis(port=port) as node:
                node.script_flush()
        sessions = [f"flushed-{n}" for n in range(30)]  # over every primary
        for session_id in sessions:
            await store.save_turn(session_id, NewTurn(role="user", content=session_id))
        for session_id in sessions:
            assert [t.content for t in await store.get_session(session_id)] == [session_id]
        listed = {summary.session_id for summary in (await store.list_sessions(limit=100)).sessions}
        assert listed == {"warm", *sessions}
        assert await store.delete_session("flushed-0")


async def test_a_reindex_scans_every_primary(
    make_settings: SettingsFactory, redis_cluster: RedisCluster, key_prefix: str
) -> None:
    written = [f"ts-{n}" for n in range(30)]
    with ClusterRaw(redis_cluster.ports[0]) as raw:
        for session_id in written:
            turn = {
                "role": "user",
                "content": f"from TypeScript {session_id}",
                "timestamp": 1_732_540_000_000,
            }
            raw.set(session_key(key_prefix, session_id), json.dumps([turn], separators=(",", ":")))
    assert all(keys_per_primary(redis_cluster, f"{key_prefix}session:*").values())
    async with open_store(make_settings("cluster")) as store:
        assert isinstance(store, RedisStore)
        assert (await store.list_sessions()).sessions == []
        indexed, seen, skipped = await store.reindex(page_size=7)
        assert (indexed, skipped) == (30, [])
        assert seen >= 30
        page = await store.list_sessions(limit=100)
        assert {s.session_id: s.title for s in page.sessions} == {s: f"from TypeScript {s}" for s in written}
        assert (await store.reindex())[0] == 30  # again: nothing changes but the count
        assert len((await store.list_sessions(limit=100)).sessions) == 30


async def test_saves_wait_for_the_replicas_asked_for(make_settings: SettingsFactory) -> None:
    async with open_store(make_settings("cluster", redis_replica_acks=1)) as store:
        saved = await store.save_turn("acked", NewTurn(role="user", content="on a replica too"))
        assert saved.stored
        assert await store.delete_session("acked")


async def test_too_few_replicas_make_a_save_unavailable_and_a_retry_stores_it_once(
    make_settings: SettingsFactory,
) -> None:
    # Each primary has one replica: two never acknowledge.
    settings = make_settings("cluster", redis_replica_acks=2, store_retries=1, store_timeout_seconds=2)
    async with open_store(settings) as store:
        with pytest.raises(StoreUnavailableError, match=r"only 1 of the 2 replicas") as raised:
            await store.save_turn("wanting", NewTurn(role="user", content="stored on the primary"))
        assert raised.value.save_id is not None
        assert 'retry the same call with id "' in str(raised.value)
        retry = NewTurn(role="user", content="stored on the primary", id=raised.value.save_id)
        with pytest.raises(StoreUnavailableError):
            await store.save_turn("wanting", retry)
    async with open_store(make_settings("cluster")) as store:
        turns = await store.get_session("wanting")
    assert [(t.content, t.id) for t in turns] == [("stored on the primary", raised.value.save_id)]


async def test_one_node_without_replicas_cannot_acknowledge(make_settings: SettingsFactory) -> None:
    async with open_store(make_settings("redis", redis_replica_acks=1, store_retries=0)) as store:
        with pytest.raises(
            StoreUnavailableError, match=r"only 0 of the 1 replicas REDIS_REPLICA_ACKS asks for"
        ):
            await store.save_turn("alone", NewTurn(role="user", content="no replica"))
        # Both reached the primary, which is all that an unacknowledged change may count on.
        assert [t.content for t in await store.get_session("alone")] == ["no replica"]
        with pytest.raises(StoreUnavailableError, match=r"stored the change, but only 0 of the 1"):
            await store.delete_session("alone")
        assert await store.get_session("alone") == []


@pytest.fixture
def shard_lost() -> Iterator[RedisCluster]:
    """A cluster of three primaries without replicas, one of them killed."""
    cluster = RedisCluster(replicas=0).start()
    try:
        victim, survivor = cluster.nodes[0].port, cluster.nodes[1].port
        cluster.kill(victim)
        cluster._wait(lambda: cluster_info(survivor)["cluster_state"] == "fail")
        yield cluster
    finally:
        cluster.stop()


async def test_a_cluster_missing_a_shard_is_reported_by_the_startup_check(shard_lost: RedisCluster) -> None:
    url = f"redis+cluster://127.0.0.1:{shard_lost.nodes[1].port}"
    async with open_store(StoreConfig(redis_url=url, store_timeout_seconds=2, store_retries=0)) as store:
        with pytest.raises(StoreUnavailableError, match=r"not serving all its slots \(cluster_state:fail\)"):
            await store.check()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:7000/2", "a Redis Cluster has only database 0"),
        ("redis+sentinel://127.0.0.1:26379", "redis\\+cluster://"),
    ],
)
def test_cluster_urls_are_checked(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StoreConfig(redis_url=url)


def test_cluster_urls_select_the_cluster_client() -> None:
    assert StoreConfig(redis_url="redis+cluster://h:7000").redis_cluster
    assert StoreConfig(redis_url="rediss+cluster://u:secret@h:7000/0").redis_cluster
    assert not StoreConfig(redis_url="redis://h:6379/0").redis_cluster


def test_replica_acknowledgements_are_for_redis_only(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_REPLICA_ACKS applies to a store at REDIS_URL only"):
        StoreConfig(
            upstash_redis_rest_url="https://x.upstash.io", upstash_redis_rest_token="t", redis_replica_acks=1
        )
    assert StoreConfig(redis_url=redis_server.url, redis_replica_acks=1).redis_replica_acks == 1


def node_id(port: int) -> str:
    return command(port, "CLUSTER", "MYID")


def owner_of(cluster: RedisCluster, slot: int) -> int:
    """The port of the primary that serves `slot` now."""
    for line in command(cluster.nodes[0].port, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "master" not in fields[2]:
            continue
        for served in fields[8:]:
            first, _, last = served.partition("-")
            if first.isdigit() and int(first) <= slot <= int(last or first):
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
    raise AssertionError(f"no primary serves slot {slot}")


def start_moving(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """Mark `slot` as moving from `source` to `target` and move its keys: `source` answers ASK."""
    command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", node_id(source))
    command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", node_id(target))
    with redis.Redis(port=source) as node:
        keys = node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            node.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)


def finish_moving(cluster: RedisCluster, slot: int, target: int) -> None:
    """`target` serves `slot` from now on: the others answer MOVED."""
    for port in cluster.primary_ports():
        command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", node_id(target))


@pytest.mark.parametrize("acks", [0, 1])
async def test_saves_follow_a_slot_that_moves_to_another_primary(
    make_settings: SettingsFactory, key_prefix: str, acks: int
) -> None:
    # A cluster of its own: the test changes its slot map.
    cluster = RedisCluster(node_timeout_ms=STEADY_NODE_TIMEOUT_MS).start()
    try:
        settings = make_settings("cluster", redis_url=cluster.url, redis_replica_acks=acks, store_retries=1)
        session_id = "moving"
        slot = key_slot(session_key(key_prefix, session_id).encode())
        async with open_store(settings) as store:
            await store.save_turn(session_id, NewTurn(role="user", content="before"))
            source = owner_of(cluster, slot)
            target = next(port for port in cluster.primary_ports() if port != source)

            # While the slot's keys move, a script over a moved key and its marker (which exists
            # nowhere) is answered ASK, then TRYAGAIN by the target: the store is unavailable.
            start_moving(cluster, slot, source, target)
            during = NewTurn(role="assistant", content="while moving", id="during-the-move")
            with pytest.raises(StoreUnavailableError, match='retry the same call with id "during-the-move"'):
                await store.save_turn(session_id, during)

            finish_moving(cluster, slot, target)  # the store's map still names the source: MOVED
            await store.save_turn(session_id, during)
            await store.save_turn(session_id, NewTurn(role="user", content="after"))
            turns = await store.get_session(session_id)
            assert [t.content for t in turns] == ["before", "while moving", "after"]
            listed = (await store.list_sessions()).sessions
            assert [summary.session_id for summary in listed] == [session_id]
        assert owner_of(cluster, slot) == target
        with redis.Redis(port=target) as node:
            assert node.exists(session_key(key_prefix, session_id))
    finally:
        cluster.stop()


@pytest.fixture
def guarded_cluster() -> Iterator[RedisCluster]:
    """Three primaries without replicas that ask for a password."""
    cluster = RedisCluster(replicas=0, node_timeout_ms=STEADY_NODE_TIMEOUT_MS).start()
    try:
        for port in cluster.ports:
            command(port, "CONFIG", "SET", "requirepass", "right-password")
        yield cluster
    finally:
        cluster.stop()


async def test_a_wrong_cluster_password_is_a_setting_to_fix_not_an_outage(
    guarded_cluster: RedisCluster,
) -> None:
    port = guarded_cluster.ports[0]
    rejected = "rejected the credentials: check the user name and password in REDIS_URL"
    for credentials in (":wrong-password@", ""):
        url = f"redis+cluster://{credentials}127.0.0.1:{port}"
        async with open_store(StoreConfig(redis_url=url, store_timeout_seconds=5)) as store:
            with pytest.raises(StoreAuthError, match=rejected) as raised:
                await store.check()
        assert "wrong-password" not in str(raised.value)
    right = f"redis+cluster://:right-password@127.0.0.1:{port}"
    async with open_store(StoreConfig(redis_url=right)) as store:
        await store.check()
        await store.save_turn("s", NewTurn(role="user", content="let in"))


async def test_a_cluster_url_aimed_at_one_server_says_it_is_not_a_cluster(redis_server: RedisServer) -> None:
    url = f"redis+cluster://127.0.0.1:{redis_server.port}"
    async with open_store(StoreConfig(redis_url=url, store_timeout_seconds=5)) as store:
        with pytest.raises(StoreSettingsError, match=r"is not a Redis Cluster .*use redis:// or rediss://"):
            await store.check()


async def test_a_plain_url_aimed_at_a_cluster_node_says_to_use_the_cluster_scheme(
    redis_cluster: RedisCluster, key_prefix: str
) -> None:
    seed = redis_cluster.nodes[0].port  # the first primary: it serves the first third of the slots
    elsewhere = next(
        f"s{n}" for n in range(1000) if key_slot(session_key(key_prefix, f"s{n}").encode()) >= SLOTS // 3 + 1
    )
    config = StoreConfig(
        redis_url=f"redis://127.0.0.1:{seed}/0", key_prefix=key_prefix, store_timeout_seconds=5
    )
    async with open_store(config) as store:
        with pytest.raises(StoreSettingsError, match=r"is a node of a Redis Cluster: use redis\+cluster://"):
            await store.get_session(elsewhere)
