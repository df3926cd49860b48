"""The Redis backend: any Redis-protocol server (Redis, Valkey, Upstash's TCP endpoint) via redis-py."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from memory.errors import (
    ConfigurationError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
)
from memory.exception_map import (
    Endpoint,
    ErrorRule,
    busy,
    foreign_type,
    is_busy,
    refused,
    starts_with,
    unreachable,
)
from memory.limits import Limits
from memory.redis_protocol_store import Argument, RedisProtocolStore
from memory.tls_probe import answers_in_plain, plain_endpoint_error
from memory.urls import redact_url

_RESP_REPLY_PREFIXES = (b"+", b"-", b"$", b"*", b"%", b"_", b":")


def _rejected_credentials(exc: Exception, endpoint: Endpoint) -> StoreAuthError:
    return StoreAuthError(
        f"{endpoint.what} rejected the credentials: check the user name and password in {endpoint.variable}"
    )


def _loading(exc: Exception, endpoint: Endpoint) -> StoreUnavailableError:
    return StoreUnavailableError(f"{endpoint.what} is loading its data set; try again later")


def _read_only(exc: Exception, endpoint: Endpoint) -> StoreSettingsError:
    return StoreSettingsError(
        f"{endpoint.what} is a read-only replica: point {endpoint.variable} at the primary"
    )


_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "NOPERM")

# redis-py's replies are bytes, decoded here with "replace": no UnicodeDecodeError to map.
REDIS_ERRORS = (
    ErrorRule(redis_errors.ResponseError, foreign_type, when=starts_with("WRONGTYPE")),
    ErrorRule(redis_errors.AuthenticationError, _rejected_credentials),
    ErrorRule(redis_errors.ResponseError, _rejected_credentials, when=starts_with(*_AUTH_MARKERS)),
    ErrorRule(redis_errors.BusyLoadingError, _loading, retry=True),
    ErrorRule((redis_errors.ConnectionError, redis_errors.TimeoutError), unreachable, retry=True),
    ErrorRule(redis_errors.ResponseError, busy, when=is_busy, retry=True),
    ErrorRule(redis_errors.ResponseError, _read_only, when=starts_with("READONLY")),
    ErrorRule(redis_errors.ResponseError, refused),
)


class RedisStore(RedisProtocolStore):
    """Sessions in a Redis-protocol server, with the same keys and script as the Upstash backend."""

    backend = "redis"
    errors = REDIS_ERRORS

    def __init__(self, url: str, limits: Limits, timeout_seconds: float, retries: int) -> None:
        super().__init__(limits, timeout_seconds, retries, Endpoint("Redis", redact_url(url), "REDIS_URL"))
        parts = urlsplit(url)
        self._tls_address = (
            (parts.hostname or "localhost", parts.port or 6379) if parts.scheme == "rediss" else None
        )
        # Retries are ours, shared with the Upstash backend and bounded by the timeout.
        try:
            self._client = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
                retry=Retry(NoBackoff(), 0),
            )
        except (ValueError, TypeError):
            # redis-py's message may quote the URL's parts, the password among them.
            raise ConfigurationError("REDIS_URL could not be used: check its query options") from None

    async def _command(self, *args: Argument) -> object:
        # execute_command: no per-command reply parsing, the raw reply as the script returns it.
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def _tail(self, key: str, size: int) -> tuple[str, bool]:
        data = await self._command("GETRANGE", key, -size, -1)
        if not isinstance(data, bytes):
            raise StoreError(f"the store answered GETRANGE with a {type(data).__name__}")
        whole = len(data) < size
        # The window may start inside a UTF-8 sequence: skip its continuation bytes.
        start = 0
        while not whole and start < 3 and start < len(data) and 0x80 <= data[start] < 0xC0:
            start += 1
        return data[start:].decode("utf-8", "replace"), whole

    def _is_noscript(self, exc: Exception) -> bool:
        return isinstance(exc, redis_errors.NoScriptError)

    async def _plain_port_error(self) -> StoreSettingsError | None:
        if self._tls_address is None:
            return None
        host, port = self._tls_address
        if await answers_in_plain(host, port, b"PING\r\n", _RESP_REPLY_PREFIXES):
            return plain_endpoint_error(self.endpoint, "redis://")
        return None

    async def aclose(self) -> None:
        await self._client.aclose()
