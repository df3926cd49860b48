"""`check()` on every store, and how store failures are classified: a setting to fix, or an outage."""

from __future__ import annotations

import gc
import threading
import time
import warnings

import anyio
import pytest
import redis

from localservers.gateway import Fault, UpstashGateway
from localservers.redis_server import RedisServer, free_port
from memory import (
    ChatTurn,
    SessionStore,
    StoreAuthError,
    StoreSettingsError,
    StoreUnavailableError,
    open_store,
)
from tests.conftest import SettingsFactory
from tests.support.turns import without_ids

pytestmark = pytest.mark.anyio

HI = ChatTurn(role="user", content="hi", timestamp=1)


async def test_check_passes_on_a_working_store(store: SessionStore) -> None:
    await store.check()
    await store.check(timeout_seconds=1.0)


async def test_check_on_a_closed_port_is_an_outage(make_settings: SettingsFactory) -> None:
    async with open_store(make_settings("redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")) as store:
        with pytest.raises(StoreUnavailableError, match="refused the connection"):
            await store.check(1.0)


async def test_check_with_rediss_on_a_plain_port_is_a_setting_to_fix(
    make_settings: SettingsFactory, redis_server: RedisServer
) -> None:
    async with open_store(
        make_settings("redis", redis_url=f"rediss://127.0.0.1:{redis_server.port}/0")
    ) as store:
        started = time.monotonic()
        with pytest.raises(StoreSettingsError, match="set REDIS_URL to a redis:// URL"):
            await store.check(1.0)
        assert time.monotonic() - started < 3.0


async def test_check_with_https_on_a_plain_port_is_a_setting_to_fix(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    url = gateway.url.replace("http://", "https://")
    try:
        async with open_store(make_settings("upstash", upstash_redis_rest_url=url)) as store:
            with pytest.raises(StoreSettingsError, match="set UPSTASH_REDIS_REST_URL to a http:// URL"):
                await store.check(1.0)
    finally:
        # httpcore leaves a socket unclosed when a TLS handshake is cancelled; collect it here,
        # quietly, rather than have its ResourceWarning fail whichever test runs next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


# -- Upstash: an answer's HTTP status, which the client does not show --------------------------


async def test_upstash_5xx_with_a_json_body_is_an_outage_and_is_sent_again(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    async with open_store(make_settings("upstash", store_retries=2)) as store:
        gateway.inject(Fault.JSON_503, count=3)
        with pytest.raises(
            StoreUnavailableError, match=r"^Upstash at http://127\.0\.0\.1:\d+ answered HTTP 503; try"
        ):
            await store.save_turn("s", HI)
        assert len(gateway.one_shot_faults) == 0, "the first attempt and both retries"
        gateway.inject(Fault.JSON_503)
        assert (await store.save_turn("s", HI)).stored  # the retry after one 503
        assert without_ids(await store.get_session("s")) == [HI]


async def test_upstash_url_with_a_path_is_a_setting_to_fix(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    async with open_store(make_settings("upstash", upstash_redis_rest_url=f"{gateway.url}/v2")) as store:
        with pytest.raises(StoreSettingsError, match="refused PING: check UPSTASH_REDIS_REST_URL") as caught:
            await store.check()
        # The path is the mistake, so the message shows it.
        assert str(caught.value).startswith(f"Upstash at {gateway.url}/v2 refused PING")


async def test_upstash_wrong_token_is_an_auth_error(make_settings: SettingsFactory) -> None:
    async with open_store(make_settings("upstash", upstash_redis_rest_token="wrong-token-4b1d")) as store:
        with pytest.raises(StoreAuthError, match="check UPSTASH_REDIS_REST_TOKEN") as caught:
            await store.check()
        assert "wrong-token-4b1d" not in str(caught.value)


# -- Redis: busy replies ---------------------------------------------------------------------------

_BUSY_SCRIPT = (
    "local t = redis.call('TIME'); local stop = t[1] * 1000000 + t[2] + ARGV[1]; "
    "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop"
)


async def test_a_redis_busy_running_a_script_is_unavailable_not_refused(
    make_settings: SettingsFactory, redis_server: RedisServer
) -> None:
    admin = redis.Redis(port=redis_server.port)
    threshold = str(admin.config_get("busy-reply-threshold")["busy-reply-threshold"])
    admin.config_set("busy-reply-threshold", 50)

    def run_busy_script() -> None:
        with redis.Redis(port=redis_server.port) as client:
            client.eval(_BUSY_SCRIPT, 0, 1_500_000)

    busy = threading.Thread(target=run_busy_script)
    try:
        async with open_store(make_settings("redis", store_retries=0)) as store:
            busy.start()
            await anyio.sleep(0.3)  # the script has run past the threshold: the server answers BUSY now
            with pytest.raises(StoreUnavailableError, match=r"is busy \(BUSY\); try again later$"):
                await store.get_session("s")
    finally:
        if busy.is_alive():
            busy.join()
        admin.config_set("busy-reply-threshold", threshold)
        admin.close()
