"""The JWKS cache: one fetch serves many tokens, unknown key ids refetch sparingly, failures keep keys,
and a slow provider holds no lookup longer than one fetch deadline."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from localservers.redis_server import free_port
from server.jwks import JwksCache
from tests.support.jwks import JwksServer, SigningKey

pytestmark = pytest.mark.anyio

# A short fetch deadline keeps these tests short; a dribbling provider sends a byte every
# DRIBBLE seconds, well within the deadline, so only a deadline on the whole fetch can end it.
DEADLINE = 1.5
DRIBBLE = 0.5


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey("k1")


async def test_one_fetch_serves_many_lookups(key: SigningKey) -> None:
    with JwksServer(key) as server:
        cache = JwksCache(server.url)
        for _ in range(5):
            found = await cache.key_for("k1")
            assert found is not None
            assert found.key_id == "k1"
        assert server.fetches == 1


async def test_unknown_key_ids_refetch_at_most_once_per_interval(key: SigningKey) -> None:
    with JwksServer(key) as server:
        cache = JwksCache(server.url, min_refetch=60)
        assert await cache.key_for("k1") is not None
        for _ in range(5):
            assert await cache.key_for("rotated-away") is None
        assert server.fetches == 1


async def test_a_token_without_kid_uses_the_only_key(key: SigningKey) -> None:
    with JwksServer(key) as server:
        found = await JwksCache(server.url).key_for(None)
        assert found is not None
        assert found.key_id == "k1"


async def test_an_unreachable_provider_gives_no_key_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cache = JwksCache(f"http://127.0.0.1:{free_port()}/jwks.json", timeout=2)
    with caplog.at_level(logging.WARNING, logger="server.jwks"):
        assert await cache.key_for("k1") is None
    assert (
        "could not fetch the JWKS from MCP_JWT_JWKS_URL (ConnectError); 0 key(s) stay in use" in caplog.text
    )


async def test_a_dribbling_provider_holds_a_fetch_for_one_deadline_at_most(
    key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    # The server waits for this first fetch before it serves.
    with JwksServer(key, dribble=DRIBBLE) as server:
        cache = JwksCache(server.url, timeout=DEADLINE)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="server.jwks"):
            await cache.refresh()
        elapsed = time.monotonic() - started
    assert elapsed < 2 * DEADLINE
    assert "(no complete answer within 1.5 s); 0 key(s) stay in use" in caplog.text


async def test_concurrent_lookups_of_unknown_key_ids_share_one_fetch(key: SigningKey) -> None:
    answers: dict[str, object] = {}

    async def look_up(kid: str) -> None:
        answers[kid] = await cache.key_for(kid)

    with JwksServer(key, dribble=DRIBBLE) as server:
        cache = JwksCache(server.url, timeout=DEADLINE)
        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for number in range(8):
                group.start_soon(look_up, f"unknown-{number}")
        elapsed = time.monotonic() - started
        assert server.fetches == 1
    assert answers == {f"unknown-{number}": None for number in range(8)}
    # All eight within one deadline (and some slack for a busy machine), not one after another.
    assert elapsed < 2 * DEADLINE


async def test_concurrent_first_lookups_share_one_fetch_and_all_find_the_key(key: SigningKey) -> None:
    with JwksServer(key) as server:
        cache = JwksCache(server.url)
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(cache.key_for, "k1")
        assert server.fetches == 1
        found = await cache.key_for("k1")
        assert found is not None
        assert server.fetches == 1


async def test_a_cached_key_is_used_at_once_while_its_refresh_is_under_way(key: SigningKey) -> None:
    with JwksServer(key) as server:
        cache = JwksCache(server.url, timeout=DEADLINE, max_age=0)  # every lookup is due a refresh
        await cache.refresh()
        server.dribble = DRIBBLE
        started = time.monotonic()
        found = await cache.key_for("k1")
        # The refresh it started can only end at its deadline: returning sooner means no wait.
        assert time.monotonic() - started < DEADLINE
        assert found is not None
        assert found.key_id == "k1"
        # An unknown key id waits for that refresh, and starts no other.
        assert await cache.key_for("rotated-in") is None
        assert server.fetches == 2
        assert time.monotonic() - started < 2 * DEADLINE


async def test_a_lookup_that_gives_up_leaves_the_shared_fetch_running(key: SigningKey) -> None:
    found: list[object] = []

    async def patient() -> None:
        found.append(await cache.key_for("k1"))

    # Slow but complete: the answer takes about a second to arrive.
    with JwksServer(key, dribble=0.001) as server:
        cache = JwksCache(server.url)
        async with anyio.create_task_group() as group:
            with anyio.move_on_after(0.1):  # a client hanging up mid-request
                await cache.key_for("k1")
            group.start_soon(patient)
        assert server.fetches == 1
    assert len(found) == 1
    assert found[0] is not None
