"""The two clients of a Redis-protocol server, each behind the store's `Adapter` interface:
redis-py (Redis, Valkey, Upstash's TCP endpoint) and `upstash-redis` (Upstash's REST API).

Each adapter's `translate` is the one place where that client's exceptions become memory
errors; the store sends a command again exactly when the error says the store is unavailable.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio
import httpx
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from upstash_redis.asyncio import Redis as UpstashRedis
from upstash_redis.errors import UpstashError

from memory import errors
from memory.config import StoreConfig, redact_url
from memory.errors import (
    ConfigurationError,
    SessionMemoryError,
    StoreAuthError,
    StoreSettingsError,
    StoreUnavailableError,
)
from memory.redis_store import Argument

PROBE_SECONDS = 1.0
_RESP_REPLY_PREFIXES = (b"+", b"-", b"$", b"*", b"%", b"_", b":")
# Replies of a server that is up but cannot run commands just now; the command did not run.
_BUSY_CODES = frozenset({"BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN"})
_AUTH_CODES = frozenset({"WRONGPASS", "NOAUTH", "NOPERM"})
# Replies only a node of a Redis Cluster gives: a key that another node serves.
_CLUSTER_CODES = frozenset({"MOVED", "ASK", "CROSSSLOT"})
# Replies that are stored text, which may hold bytes that are not UTF-8.
_TEXT_READS = frozenset({"GET", "GETRANGE"})
# Anywhere in an Upstash error: proxies reword the replies.
_UPSTASH_AUTH_MARKERS = (*_AUTH_CODES, "UNAUTHORIZED", "INVALID OR MISSING AUTH TOKEN")


class RedisAdapter:
    """redis-py's asyncio client, with no retries of its own: the store's are bounded by its deadline."""

    backend = "redis"
    variable = "REDIS_URL"
    key_locking = False
    cluster = False

    def __init__(self, url: str, config: StoreConfig) -> None:
        self.location = redact_url(url)
        self.what = f"Redis at {self.location}"
        parts = urlsplit(url)
        self._tls_address = (
            (parts.hostname or "localhost", parts.port or 6379) if parts.scheme == "rediss" else None
        )
        timeout = config.store_timeout_seconds
        try:
            self._client = aioredis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
            )
        except (ValueError, TypeError):
            # redis-py's message may quote the URL's parts, the password among them.
            raise ConfigurationError("REDIS_URL could not be used: check its query options") from None

    async def command(self, *args: Argument) -> object:
        # execute_command: no per-command reply parsing, the raw reply as the script returns it.
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def tail(self, key: str, size: int) -> tuple[str, bool]:
        return window_text(await self.command("GETRANGE", key, -size, -1), size)

    async def scan(self, cursor: str, pattern: str, count: int) -> tuple[str, list[str]]:
        return scan_page(await self.command("SCAN", cursor, "MATCH", pattern, "COUNT", count))

    async def together(self, key: str, commands: Sequence[Sequence[Argument]]) -> list[object]:
        pipeline = self._client.pipeline(transaction=False)
        for command in commands:
            pipeline.execute_command(*command)
        replies: list[object] = await pipeline.execute(raise_on_error=False)
        return replies

    def translate(self, exc: Exception) -> SessionMemoryError | None:
        # Replies are bytes, decoded here with "replace": no UnicodeDecodeError to map.
        # AuthenticationError and BusyLoadingError are ConnectionErrors: they come first.
        if isinstance(exc, redis_errors.AuthenticationError):
            return self._rejected()
        if isinstance(exc, redis_errors.BusyLoadingError):
            return StoreUnavailableError(f"{self.what} is loading its data set; try again later")
        if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
            return unreachable(exc, self.what, self.variable)
        if not isinstance(exc, redis_errors.ResponseError):
            return None
        code = _code(exc)
        if code == "WRONGTYPE":
            return errors.foreign_type()
        if code in _AUTH_CODES:
            return self._rejected()
        if code in _BUSY_CODES:
            return errors.busy(self.what, str(exc))
        if (
            isinstance(exc, (redis_errors.AskError, redis_errors.ClusterCrossSlotError))
            or code in _CLUSTER_CODES
        ):
            return StoreSettingsError(
                f"{self.what} is a node of a Redis Cluster: use redis+cluster:// (or rediss+cluster://) "
                f"in {self.variable}"
            )
        if code == "READONLY":
            return StoreSettingsError(
                f"{self.what} is a read-only replica: point {self.variable} at the primary"
            )
        return errors.refused("Redis", exc)

    def is_noscript(self, exc: Exception) -> bool:
        return isinstance(exc, redis_errors.NoScriptError)

    async def diagnose(self) -> SessionMemoryError | None:
        if self._tls_address is None:
            return None
        host, port = self._tls_address
        if await answers_in_plain(host, port, b"PING\r\n", _RESP_REPLY_PREFIXES):
            return errors.plain_port(self.what, self.variable, "redis://")
        return None

    async def aclose(self) -> None:
        await self._client.aclose()

    def _rejected(self) -> StoreAuthError:
        return StoreAuthError(
            f"{self.what} rejected the credentials: check the user name and password in {self.variable}"
        )


class _ServerFailed(Exception):
    """Upstash, or a proxy in front of it, answered with a 5xx status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def _refuse_server_errors(response: httpx.Response) -> None:
    if response.status_code >= 500:
        raise _ServerFailed(response.status_code)


class UpstashAdapter:
    """The official `upstash-redis` client, with no retries of its own (they wait 3 s each).

    Its public surface gives the JSON body of an answer, never its HTTP status, so a response
    hook on its HTTP client tells a 5xx (an outage, retried, whatever its body) from the store
    refusing a command. A URL with a wrong path still reads like a refusal (which `check`
    reports as a setting to fix).
    """

    backend = "upstash"
    variable = "UPSTASH_REDIS_REST_URL"
    key_locking = True
    cluster = False

    def __init__(self, url: str, token: str) -> None:
        self.location = redact_url(url)
        self.what = f"Upstash at {self.location}"
        parts = urlsplit(url)
        self._tls_address = (parts.hostname or "", parts.port or 443) if parts.scheme == "https" else None
        self._client = UpstashRedis(url=url, token=token, rest_retries=0, allow_telemetry=False)
        _http_client(self._client).event_hooks["response"].append(_refuse_server_errors)

    async def command(self, *args: Argument) -> object:
        try:
            return await self._client.execute(list(args))
        except UnicodeDecodeError as exc:
            # The client decodes every reply as strict UTF-8, where the TypeScript layer's
            # TextDecoder replaces what is not UTF-8, and a tail window may start inside a
            # character. The reply's bytes are in the error: read them as Redis replies are.
            if args and args[0] in _TEXT_READS and isinstance(exc.object, bytes):
                return exc.object
            raise

    async def tail(self, key: str, size: int) -> tuple[str, bool]:
        return window_text(await self.command("GETRANGE", key, -size, -1), size)

    async def scan(self, cursor: str, pattern: str, count: int) -> tuple[str, list[str]]:
        return scan_page(await self.command("SCAN", cursor, "MATCH", pattern, "COUNT", count))

    async def together(self, key: str, commands: Sequence[Sequence[Argument]]) -> list[object]:
        # Upstash replicates by itself; the settings refuse REDIS_REPLICA_ACKS with it.
        raise ConfigurationError("Upstash sends one command per request here")

    def translate(self, exc: Exception) -> SessionMemoryError | None:
        if isinstance(exc, UnicodeDecodeError):  # the client decodes every reply as strict UTF-8
            return errors.not_utf8()
        if isinstance(exc, httpx.TransportError):
            return unreachable(exc, self.what, self.variable)
        if isinstance(exc, _ServerFailed):
            return StoreUnavailableError(f"{self.what} answered HTTP {exc.status}; try again later")
        if isinstance(exc, json.JSONDecodeError):
            return StoreUnavailableError(
                f"{self.what} answered with something that is not JSON (an outage or a proxy error page); "
                "try again later"
            )
        if not isinstance(exc, UpstashError):
            return None
        reply = str(exc).upper()
        code = _code(exc)
        if code == "WRONGTYPE":
            return errors.foreign_type()
        # Upstash answers a wrong token with HTTP 401 and a JSON body such as "WRONGPASS …".
        if any(marker in reply for marker in _UPSTASH_AUTH_MARKERS):
            return StoreAuthError(
                f"{self.what} rejected the token: check UPSTASH_REDIS_REST_TOKEN "
                "(it must be the database's REST token, not a read-only one)"
            )
        if code in _BUSY_CODES:
            return errors.busy(self.what, str(exc))
        return errors.refused("Upstash", exc)

    def is_noscript(self, exc: Exception) -> bool:
        return isinstance(exc, UpstashError) and "NOSCRIPT" in str(exc).upper()

    async def diagnose(self) -> SessionMemoryError | None:
        if self._tls_address is None:
            return None
        host, port = self._tls_address
        greeting = f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
        if await answers_in_plain(host, port, greeting, (b"HTTP/",)):
            return errors.plain_port(self.what, self.variable, "http://")
        return None

    async def aclose(self) -> None:
        await self._client.close()


def scan_page(reply: object) -> tuple[str, list[str]]:
    """SCAN's reply as (next cursor, keys), as redis-py (a tuple) or upstash-redis (a list) gives it."""
    if isinstance(reply, (list, tuple)) and len(reply) == 2 and isinstance(reply[1], list):
        return reply_text(reply[0]), [reply_text(key) for key in reply[1]]
    raise errors.unexpected_reply("SCAN", reply)


def reply_text(value: object) -> str:
    """A reply item as text, whichever client decoded it."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def window_text(data: object, size: int) -> tuple[str, bool]:
    """A GETRANGE reply of `size` bytes at most as text, and whether it is the whole value.

    A window cut from a longer value may start inside a UTF-8 sequence: its continuation bytes
    are skipped. Bytes that are not UTF-8 read as U+FFFD, as TextDecoder reads them.
    """
    if isinstance(data, str):  # upstash-redis decoded it: the window started on a character
        return data, len(data) < size and len(data.encode("utf-8")) < size
    if not isinstance(data, bytes):
        raise errors.unexpected_reply("GETRANGE", data)
    whole = len(data) < size
    start = 0
    while not whole and start < 3 and start < len(data) and 0x80 <= data[start] < 0xC0:
        start += 1
    return data[start:].decode("utf-8", "replace"), whole


def unreachable(exc: Exception, what: str, variable: str) -> StoreSettingsError | StoreUnavailableError:
    """A connection that failed before the store answered: a setting to fix, or an outage.

    Clients wrap the socket's exception in their own: its cause tells which.
    """
    if find_cause(exc, ssl.SSLError):
        return errors.tls_failed(what, variable)
    if find_cause(exc, socket.gaierror):
        return errors.not_resolved(what, variable)
    if find_cause(exc, ConnectionRefusedError):
        return errors.connection_refused(what, variable)
    if find_cause(exc, TimeoutError):
        return errors.no_answer(what)
    return errors.unreachable(what, type(exc).__name__)


def find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` in `exc`'s chain of causes, `exc` included."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


async def answers_in_plain(host: str, port: int, greeting: bytes, reply_prefixes: tuple[bytes, ...]) -> bool:
    """True if the endpoint answers `greeting` sent without TLS: a TLS URL aimed at a plain port."""
    try:
        with anyio.fail_after(PROBE_SECONDS):
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(greeting)
                reply = await stream.receive(64)
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False
    return reply.startswith(reply_prefixes)


def _code(exc: Exception) -> str:
    """The code word a Redis error reply opens with (`WRONGTYPE`, `BUSY`, …)."""
    words = str(exc).split(maxsplit=1)
    return words[0].upper() if words else ""


def _http_client(client: UpstashRedis) -> httpx.AsyncClient:
    """The httpx client inside upstash-redis (not public; a test holds it to the pinned series)."""
    http = client._http._client
    if not isinstance(http, httpx.AsyncClient):
        raise TypeError("upstash-redis no longer sends through an httpx.AsyncClient")
    return http
