"""The Redis backend: any Redis-protocol server (Redis, Valkey, Upstash's TCP endpoint) via redis-py."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from memory.errors import (
    ConfigurationError,
    CorruptSessionError,
    SessionMemoryError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
)
from memory.failures import answers_in_plain, network_error, plain_endpoint_error
from memory.rules import Limits
from memory.scripted import Argument, ScriptedStore

_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "NOPERM")
# Replies of a server that is up but cannot run commands just now; the command did not run.
_BUSY_MARKERS = ("BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")
_RESP_REPLY_PREFIXES = (b"+", b"-", b"$", b"*", b"%", b"_", b":")


def safe_location(url: str) -> str:
    """The URL without user name or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _is_busy(message: str) -> bool:
    return message.upper().startswith(_BUSY_MARKERS)


class RedisStore(ScriptedStore):
    """Sessions in a Redis-protocol server, with the same keys and script as the Upstash backend."""

    backend = "redis"

    def __init__(self, url: str, limits: Limits, timeout_seconds: float, retries: int) -> None:
        super().__init__(limits, timeout_seconds, retries)
        self._location = safe_location(url)
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

    @property
    def location(self) -> str:
        return self._location

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

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, redis_errors.ResponseError):
            return _is_busy(str(exc))
        return isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)) and not isinstance(
            exc, redis_errors.AuthenticationError
        )

    def _is_noscript(self, exc: Exception) -> bool:
        return isinstance(exc, redis_errors.NoScriptError)

    def _translate(self, exc: Exception) -> SessionMemoryError | None:
        message = str(exc)
        if isinstance(exc, redis_errors.AuthenticationError) or (
            isinstance(exc, redis_errors.ResponseError) and message.upper().startswith(_AUTH_MARKERS)
        ):
            return StoreAuthError(
                f"Redis at {self._location} rejected the credentials: check the user name and password "
                "in REDIS_URL"
            )
        if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
            if isinstance(exc, redis_errors.BusyLoadingError):
                return StoreUnavailableError(
                    f"Redis at {self._location} is loading its data set; try again later"
                )
            return network_error(exc, f"Redis at {self._location}", "REDIS_URL") or StoreUnavailableError(
                f"could not reach Redis at {self._location} ({type(exc).__name__}); try again later"
            )
        if isinstance(exc, UnicodeDecodeError):
            return CorruptSessionError(
                "the value stored at the session key is not UTF-8 text; it was left unchanged"
            )
        if isinstance(exc, redis_errors.ResponseError):
            if _is_busy(message):
                return StoreUnavailableError(
                    f"Redis at {self._location} is busy ({message.split()[0].upper()}); try again later"
                )
            if message.upper().startswith("READONLY"):
                return StoreSettingsError(
                    f"Redis at {self._location} is a read-only replica: point REDIS_URL at the primary"
                )
            return StoreError(f"Redis refused the command: {message}")
        return None

    async def _plain_port_error(self) -> StoreSettingsError | None:
        if self._tls_address is None:
            return None
        host, port = self._tls_address
        if await answers_in_plain(host, port, b"PING\r\n", _RESP_REPLY_PREFIXES):
            return plain_endpoint_error(f"Redis at {self._location}", "REDIS_URL", "redis://")
        return None

    async def aclose(self) -> None:
        await self._client.aclose()
