"""The JWKS cache: one fetch serves many tokens, unknown key ids refetch sparingly, failures keep keys."""

from __future__ import annotations

import logging

import pytest

from localservers.redis_server import free_port
from server.jwks import JwksCache
from tests.support.jwks import JwksServer, SigningKey

pytestmark = pytest.mark.anyio


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
