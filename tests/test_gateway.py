"""The test gateway speaks the Upstash REST protocol as the real `upstash-redis` client expects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from upstash_redis.asyncio import Redis as UpstashRedis

from localservers.gateway import UpstashGateway
from localservers.raw import RedisRaw
from tests.conftest import GATEWAY_TOKEN

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sdk(gateway: UpstashGateway) -> AsyncIterator[UpstashRedis]:
    client = UpstashRedis(url=gateway.url, token=GATEWAY_TOKEN, rest_retries=0, allow_telemetry=False)
    yield client
    await client.close()


async def test_base64_encoded_values_round_trip(sdk: UpstashRedis, key_prefix: str) -> None:
    value = 'héllo 👋 "json" \n'
    assert await sdk.set(f"{key_prefix}k", value)
    assert await sdk.get(f"{key_prefix}k") == value


async def test_unencoded_mode_returns_plain_strings(gateway: UpstashGateway, key_prefix: str) -> None:
    client = UpstashRedis(url=gateway.url, token=GATEWAY_TOKEN, rest_encoding=None, allow_telemetry=False)
    try:
        await client.set(f"{key_prefix}k", "plain é")
        assert await client.get(f"{key_prefix}k") == "plain é"
    finally:
        await client.close()


async def test_numbers_reach_redis_as_their_literal_text(
    sdk: UpstashRedis, redis_raw: RedisRaw, key_prefix: str
) -> None:
    await sdk.set(f"{key_prefix}k", "v", ex=604800)
    assert 604_790 < redis_raw.client.ttl(f"{key_prefix}k") <= 604_800
    await sdk.set(f"{key_prefix}f", "1")
    assert await sdk.incrbyfloat(f"{key_prefix}f", 0.1) == pytest.approx(1.1)


async def test_pipeline_answers_each_command_in_order(sdk: UpstashRedis, key_prefix: str) -> None:
    pipeline = sdk.pipeline()
    pipeline.set(f"{key_prefix}a", "1")
    pipeline.incr(f"{key_prefix}a")
    pipeline.get(f"{key_prefix}a")
    assert await pipeline.exec() == [True, 2, "2"]


async def test_url_with_a_trailing_slash_still_reaches_the_pipeline(
    gateway: UpstashGateway, key_prefix: str
) -> None:
    client = UpstashRedis(url=gateway.url + "/", token=GATEWAY_TOKEN, allow_telemetry=False)
    try:
        pipeline = client.pipeline()
        pipeline.set(f"{key_prefix}a", "x")
        assert await pipeline.exec() == [True]
        assert any(r.path == "//pipeline" for r in gateway.records)
    finally:
        await client.close()


async def test_multi_exec_runs_as_a_transaction(sdk: UpstashRedis, key_prefix: str) -> None:
    transaction = sdk.multi()
    transaction.set(f"{key_prefix}a", "1")
    transaction.incr(f"{key_prefix}a")
    assert await transaction.exec() == [True, 2]


async def test_per_item_errors_in_a_pipeline_and_a_discarded_transaction(gateway: UpstashGateway) -> None:
    headers = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
        piped = await client.post("/pipeline", json=[["PING"], ["NOSUCHCOMMAND"]])
        assert piped.status_code == 200
        assert piped.json()[0] == {"result": "PONG"}
        assert "error" in piped.json()[1]
        assert "result" not in piped.json()[1]
        aborted = await client.post("/multi-exec", json=[["SET", "k", "v"], ["NOSUCHCOMMAND"]])
        assert aborted.status_code == 400
        assert aborted.json()["error"].startswith("EXECABORT")
        empty = await client.post("/pipeline", json=[])
        assert empty.json() == []


async def test_missing_or_wrong_token_gets_401_with_a_json_body(gateway: UpstashGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            answer = await client.post("/", json=["PING"], headers=headers)
            assert answer.status_code == 401
            assert "error" in answer.json()
        by_query = await client.post(f"/?_token={GATEWAY_TOKEN}", json=["PING"])
        assert by_query.json() == {"result": "PONG"}


async def test_redis_errors_are_400_with_the_message(gateway: UpstashGateway) -> None:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
    ) as client:
        answer = await client.post("/", json=["EVALSHA", "0" * 40, "0"])
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("NOSCRIPT")
        bad = await client.post("/", json=["SET", "k", {"an": "object"}])
        assert bad.status_code == 400


async def test_every_answer_carries_a_fresh_sync_token(gateway: UpstashGateway) -> None:
    headers = {"Authorization": f"Bearer {GATEWAY_TOKEN}", "Upstash-Sync-Token": ""}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as client:
        first = await client.post("/", json=["PING"])
        second = await client.post("/", json=["PING"])
    assert first.headers["Upstash-Sync-Token"] != second.headers["Upstash-Sync-Token"]
