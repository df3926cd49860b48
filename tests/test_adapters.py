"""Each client's exceptions as memory errors, and which of them the store sends again.

Replies and network failures a test server cannot produce on demand are built here; the
store tests cause the rest for real.
"""

from __future__ import annotations

import json
import socket
import ssl

import httpx
import pytest
from redis import exceptions as redis_errors
from upstash_redis.errors import UpstashError

from localservers.redis_server import free_port
from memory import (
    CorruptSessionError,
    SessionMemoryError,
    StoreAuthError,
    StoreConfig,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
)
from memory.adapters import RedisAdapter, UpstashAdapter, answers_in_plain, unreachable

pytestmark = pytest.mark.anyio

REDIS = RedisAdapter(
    "redis://alice:s3cret@127.0.0.1:6379/0", StoreConfig(redis_url="redis://127.0.0.1:6379/0")
)
UPSTASH = UpstashAdapter("https://eu1-fine-fox.upstash.io", "t0ken-5ecret")


def chained(outer: Exception, cause: BaseException) -> Exception:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), CorruptSessionError, "Redis type"),
        (redis_errors.AuthenticationError("invalid password"), StoreAuthError, "check the user name"),
        (redis_errors.ResponseError("NOPERM this user has no permissions"), StoreAuthError, "REDIS_URL"),
        (redis_errors.BusyLoadingError("Redis is loading"), StoreUnavailableError, "loading its data set"),
        (redis_errors.ResponseError("TRYAGAIN Multiple keys"), StoreUnavailableError, "busy (TRYAGAIN)"),
        (redis_errors.ResponseError("CLUSTERDOWN The cluster is down"), StoreUnavailableError, "busy"),
        (redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"), StoreUnavailableError, "busy"),
        (redis_errors.ResponseError("READONLY You can't write"), StoreSettingsError, "read-only replica"),
        (redis_errors.ResponseError("ERR unknown command"), StoreError, "Redis refused the command: ERR"),
        (redis_errors.TimeoutError("Timeout reading"), StoreUnavailableError, "could not reach Redis"),
    ],
)
def test_each_redis_exception_is_worded_once_by_kind(
    error: Exception, kind: type[Exception], says: str
) -> None:
    translated = REDIS.translate(error)
    assert type(translated) is kind
    assert says in str(translated)
    assert "s3cret" not in str(translated)
    # Only an outage ends in "try again": the store sends exactly those again.
    assert str(translated).endswith("try again later") == (kind is StoreUnavailableError)


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (UpstashError("WRONGPASS invalid or missing auth token"), StoreAuthError, "UPSTASH_REDIS_REST_TOKEN"),
        (UpstashError("Unauthorized"), StoreAuthError, "rejected the token"),
        (UpstashError("WRONGTYPE Operation against a key"), CorruptSessionError, "Redis type"),
        (UpstashError("BUSY Redis is busy running a script"), StoreUnavailableError, "is busy (BUSY)"),
        (UpstashError("LOADING loading the dataset"), StoreUnavailableError, "is busy (LOADING)"),
        (UpstashError("ERR max request size exceeded"), StoreError, "Upstash refused the command: ERR max"),
        (json.JSONDecodeError("Expecting value", "<html>", 0), StoreUnavailableError, "not JSON"),
        (httpx.ConnectError("boom"), StoreUnavailableError, "could not reach Upstash"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"), CorruptSessionError, "not UTF-8"),
    ],
)
def test_each_upstash_exception_is_worded_once_by_kind(
    error: Exception, kind: type[Exception], says: str
) -> None:
    translated = UPSTASH.translate(error)
    assert type(translated) is kind
    assert says in str(translated)
    assert "t0ken-5ecret" not in str(translated)
    assert str(translated).endswith("try again later") == (kind is StoreUnavailableError)


@pytest.mark.parametrize("error", [KeyError("not a client's"), StoreError("already a memory error")])
def test_an_exception_of_no_client_passes_through(error: Exception) -> None:
    assert REDIS.translate(error) is None
    assert UPSTASH.translate(error) is None


def test_a_dns_failure_is_an_outage_that_names_the_variable() -> None:
    error = chained(redis_errors.ConnectionError("Error -2 connecting"), socket.gaierror(-2, "Name unknown"))
    translated = unreachable(error, "Redis at redis://nowhere:6379", "REDIS_URL")
    assert isinstance(translated, StoreUnavailableError)
    assert str(translated) == (
        "the host name of Redis at redis://nowhere:6379 did not resolve: check REDIS_URL and the network; "
        "try again later"
    )


def test_a_tls_error_is_a_setting_to_fix() -> None:
    error = chained(redis_errors.ConnectionError("SSL"), ssl.SSLError(1, "WRONG_VERSION_NUMBER"))
    translated: SessionMemoryError = unreachable(error, "Redis at rediss://host:6379", "REDIS_URL")
    assert isinstance(translated, StoreSettingsError)
    assert "the TLS handshake with Redis at rediss://host:6379 failed: check REDIS_URL" in str(translated)


def test_a_refused_connection_is_an_outage_that_names_the_variable() -> None:
    error = chained(
        httpx.ConnectError("All connection attempts failed"), ConnectionRefusedError(111, "refused")
    )
    translated = UPSTASH.translate(error)
    assert isinstance(translated, StoreUnavailableError)
    assert "refused the connection (nothing listening on that port?): check UPSTASH_REDIS_REST_URL" in str(
        translated
    )


async def test_a_closed_port_does_not_answer_in_plain() -> None:
    assert not await answers_in_plain("127.0.0.1", free_port(), b"PING\r\n", (b"+",))
