"""Per-client key spaces: store views on every backend, and client names made safe for keys."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from localservers.raw import RawAccess
from memory import ChatTurn, SessionStore
from server.app import build_server
from server.isolation import client_namespace
from server.settings import Settings
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio

TURN = ChatTurn(role="user", content="hello", timestamp=1)


async def test_a_view_keeps_its_sessions_under_the_namespace(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    alice = store.view("client:alice:")
    await alice.save_turn("s1", TURN)
    assert raw.get(f"{key_prefix}client:alice:session:s1") is not None
    assert raw.get(f"{key_prefix}session:s1") is None
    assert await store.get_session("s1") == []
    assert without_ids(await alice.get_session("s1")) == [TURN]


async def test_views_with_equal_ids_are_separate_sessions(store: SessionStore) -> None:
    alice, bob = store.view("client:alice:"), store.view("client:bob:")
    await alice.save_turn("same", TURN)
    assert await bob.get_session("same") == []
    assert await bob.delete_session("same") is False
    assert without_ids(await alice.get_session("same")) == [TURN]
    assert await alice.delete_session("same") is True


async def test_a_view_shares_the_open_store(store: SessionStore) -> None:
    view = store.view("client:alice:")
    assert view.backend == store.backend
    assert view.location == store.location
    await view.save_turn("s", TURN)  # works on the parent's connection, opened once


@pytest.mark.parametrize(
    ("name", "namespace"),
    [
        ("alice", "client:alice:"),
        ("svc_2.prod-eu", "client:svc_2.prod-eu:"),
        ("auth0|user:42", "client:auth0%7Cuser%3A42:"),
        ("a:session:b", "client:a%3Asession%3Ab:"),
        ("Zoë", "client:Zo%C3%AB:"),
        ("50%", "client:50%25:"),
    ],
)
def test_client_names_are_percent_encoded_into_the_key(name: str, namespace: str) -> None:
    assert client_namespace(name) == namespace


def test_no_two_names_share_a_namespace() -> None:
    names = ["a", "a:", "a%3A", "a:session:x", "a%3Asession%3Ax", "A", "a b", "a+b"]
    assert len({client_namespace(name) for name in names}) == len(names)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_per_client_mode_refuses_a_request_without_a_client_identity(store: SessionStore) -> None:
    settings = Settings(
        upstash_redis_rest_url=None,
        upstash_redis_rest_token=None,
        redis_url=None,
        session_isolation="per-client",
    )
    async with Client(build_server(store, settings)) as client:
        with pytest.raises(MCPError, match="per-client isolation needs an authenticated client"):
            await client.call_tool("get_session", {"session_id": "s"})


async def test_closing_a_view_leaves_the_store_open(store: SessionStore) -> None:
    async with store.view("client:alice:") as alice:
        await alice.save_turn("s", TURN)
    assert without_ids(await store.view("client:alice:").get_session("s")) == [TURN]


async def test_a_view_of_a_view_nests_its_namespace(
    store: SessionStore, raw: RawAccess, key_prefix: str
) -> None:
    await store.view("client:alice:").view("project:1:").save_turn("s", TURN)
    assert raw.get(f"{key_prefix}client:alice:project:1:session:s") is not None
