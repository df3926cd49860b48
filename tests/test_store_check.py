"""`check()` on every store, and how store failures are classified: a setting to fix, or an outage."""

from __future__ import annotations

import gc
import socket
import ssl
import threading
import time
import warnings

import anyio
import pytest
import redis
from redis import exceptions as redis_errors
from upstash_redis.errors import UpstashError

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
from memory.exception_map import Endpoint, rule_for, translate, unreachable
from memory.redis_store import REDIS_ERRORS
from memory.tls_probe import answers_in_plain
from memory.upstash_store import UPSTASH_ERRORS, HttpStatusError, UpstashStore
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio

HI = ChatTurn(role="user", content="hi", timestamp=1)


async def test_check_passes_on_a_working_store(store: SessionStore) -> None:
    await store.check()
    await store.check(timeout_seconds=1.0)


async def test_check_on_a_closed_port_is_an_outage(make_settings: SettingsFactory) -> None:
    store = await open_store(make_settings("redis", redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        with pytest.raises(StoreUnavailableError, match="refused the connection"):
            await store.check(1.0)
    finally:
        await store.aclose()


async def test_check_with_rediss_on_a_plain_port_is_a_setting_to_fix(
    make_settings: SettingsFactory, redis_server: RedisServer
) -> None:
    store = await open_store(make_settings("redis", redis_url=f"rediss://127.0.0.1:{redis_server.port}/0"))
    try:
        started = time.monotonic()
        with pytest.raises(StoreSettingsError, match="set REDIS_URL to a redis:// URL"):
            await store.check(1.0)
        assert time.monotonic() - started < 3.0
    finally:
        await store.aclose()


async def test_check_with_https_on_a_plain_port_is_a_setting_to_fix(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    url = gateway.url.replace("http://", "https://")
    store = await open_store(make_settings("upstash", upstash_redis_rest_url=url))
    try:
        with pytest.raises(StoreSettingsError, match="set UPSTASH_REDIS_REST_URL to a http:// URL"):
            await store.check(1.0)
    finally:
        await store.aclose()
        # httpcore leaves a socket unclosed when a TLS handshake is cancelled; collect it here,
        # quietly, rather than have its ResourceWarning fail whichever test runs next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def test_a_closed_port_does_not_answer_in_plain() -> None:
    assert not await answers_in_plain("127.0.0.1", free_port(), b"PING\r\n", (b"+",))


# -- Upstash: the HTTP status tells the kind of problem ------------------------------------------


async def test_upstash_503_with_a_json_body_is_unavailable_and_retried(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    store = await open_store(make_settings("upstash", store_retries=2))
    try:
        gateway.inject(Fault.JSON_503, count=3)  # the first try and both retries
        with pytest.raises(
            StoreUnavailableError,
            match=r"HTTP 503; try again later \(the save may have reached the store: retry with timestamp",
        ):
            await store.save_turn("s", HI)
        gateway.inject(Fault.JSON_503)  # one failure only: the retry succeeds
        assert (await store.save_turn("s", HI)).stored
        assert await store.get_session("s") == [HI]
    finally:
        await store.aclose()


async def test_upstash_url_with_a_path_is_a_setting_to_fix(
    make_settings: SettingsFactory, gateway: UpstashGateway
) -> None:
    store = await open_store(make_settings("upstash", upstash_redis_rest_url=f"{gateway.url}/v2"))
    try:
        with pytest.raises(
            StoreSettingsError, match="answered HTTP 404: check UPSTASH_REDIS_REST_URL"
        ) as caught:
            await store.check()
        # The path is the mistake, so the message shows it.
        assert str(caught.value).startswith(f"Upstash at {gateway.url}/v2 answered HTTP 404")
    finally:
        await store.aclose()


async def test_upstash_wrong_token_is_an_auth_error(make_settings: SettingsFactory) -> None:
    store = await open_store(make_settings("upstash", upstash_redis_rest_token="wrong-token-4b1d"))
    try:
        with pytest.raises(StoreAuthError, match="check UPSTASH_REDIS_REST_TOKEN") as caught:
            await store.check()
        assert "wrong-token-4b1d" not in str(caught.value)
    finally:
        await store.aclose()


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
    store = await open_store(make_settings("redis", store_retries=0))
    busy = threading.Thread(
        target=lambda: redis.Redis(port=redis_server.port).eval(_BUSY_SCRIPT, 0, 1_500_000)
    )
    try:
        busy.start()
        await anyio.sleep(0.3)  # the script has run past the threshold: the server answers BUSY now
        with pytest.raises(StoreUnavailableError, match=r"is busy \(BUSY\); try again later$"):
            await store.get_session("s")
    finally:
        busy.join()
        admin.config_set("busy-reply-threshold", threshold)
        admin.close()
        await store.aclose()


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
        redis_errors.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
        redis_errors.ResponseError("CLUSTERDOWN The cluster is down"),
        redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"),
    ],
    ids=["LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN"],
)
def test_redis_replies_a_server_cannot_give_on_demand_are_outages(error: Exception) -> None:
    # LOADING needs a restart with a large data set, the others a cluster: replies built here.
    translated = translate(REDIS_ERRORS, error, Endpoint("Redis", "redis://127.0.0.1:1/0", "REDIS_URL"))
    assert isinstance(translated, StoreUnavailableError)
    assert str(translated).endswith("try again later")
    assert "refused the command" not in str(translated)
    rule = rule_for(REDIS_ERRORS, error)
    assert rule is not None
    assert rule.retry


# -- network failures a test cannot cause without the network -------------------------------------


def chained(outer: Exception, cause: BaseException) -> Exception:
    outer.__cause__ = cause
    return outer


def test_a_dns_failure_is_an_outage_that_names_the_variable() -> None:
    error = chained(redis_errors.ConnectionError("Error -2 connecting"), socket.gaierror(-2, "Name unknown"))
    translated = unreachable(error, Endpoint("Redis", "redis://nowhere:6379", "REDIS_URL"))
    assert isinstance(translated, StoreUnavailableError)
    assert str(translated) == (
        "the host name of Redis at redis://nowhere:6379 did not resolve: check REDIS_URL and the network; "
        "try again later"
    )


def test_a_tls_error_is_a_setting_to_fix() -> None:
    error = chained(redis_errors.ConnectionError("SSL"), ssl.SSLError(1, "WRONG_VERSION_NUMBER"))
    translated = unreachable(error, Endpoint("Redis", "rediss://host:6379", "REDIS_URL"))
    assert isinstance(translated, StoreSettingsError)
    assert "the TLS handshake with Redis at rediss://host:6379 failed: check REDIS_URL" in str(translated)


@pytest.mark.parametrize(
    ("status", "kind", "says"),
    [
        (401, StoreAuthError, "rejected the token: check UPSTASH_REDIS_REST_TOKEN"),
        (403, StoreAuthError, "rejected the token: check UPSTASH_REDIS_REST_TOKEN"),
        (404, StoreSettingsError, "answered HTTP 404: check UPSTASH_REDIS_REST_URL"),
        (502, StoreUnavailableError, "answered HTTP 502; try again later"),
    ],
)
async def test_each_telling_upstash_status_is_worded_once_by_kind(
    make_settings: SettingsFactory, status: int, kind: type[Exception], says: str
) -> None:
    # 403 and 502 come from Upstash's edge or a proxy, which the test gateway does not imitate.
    store = await open_store(make_settings("upstash"))
    try:
        assert isinstance(store, UpstashStore)
        error = translate(UPSTASH_ERRORS, HttpStatusError(status), store.endpoint)
    finally:
        await store.aclose()
    assert isinstance(error, kind)
    assert says in str(error)
    assert str(error).count("try again") == (1 if kind is StoreUnavailableError else 0)


@pytest.mark.parametrize("reply", ["BUSY Redis is busy running a script", "LOADING loading the dataset"])
async def test_an_upstash_busy_reply_is_an_outage_and_retried(
    make_settings: SettingsFactory, reply: str
) -> None:
    # The replies the Redis test above gets for real, as Upstash's JSON error body carries them.
    store = await open_store(make_settings("upstash"))
    try:
        assert isinstance(store, UpstashStore)
        error = translate(UPSTASH_ERRORS, UpstashError(reply), store.endpoint)
    finally:
        await store.aclose()
    assert isinstance(error, StoreUnavailableError)
    assert str(error).endswith("try again later")
    assert "refused the command" not in str(error)
    rule = rule_for(UPSTASH_ERRORS, UpstashError(reply))
    assert rule is not None
    assert rule.retry
