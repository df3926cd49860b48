"""The Upstash backend: the Upstash REST API through the official `upstash-redis` client."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from upstash_redis.asyncio import Redis as UpstashRedis
from upstash_redis.errors import UpstashError

from memory.errors import (
    CorruptSessionError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
)
from memory.exception_map import (
    Endpoint,
    ErrorRule,
    busy,
    contains,
    foreign_type,
    is_busy,
    not_utf8,
    refused,
    starts_with,
    unreachable,
)
from memory.limits import Limits
from memory.redis_protocol_store import Argument, RedisProtocolStore
from memory.tls_probe import answers_in_plain, plain_endpoint_error
from memory.urls import redact_url


class HttpStatusError(Exception):
    """Upstash answered with an HTTP status that says more than its body: 401, 403, 404 or 5xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def _raise_for_telling_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in (401, 403, 404) or status >= 500:
        raise HttpStatusError(status)


def _status(*statuses: int) -> Callable[[Exception], bool]:
    return lambda exc: isinstance(exc, HttpStatusError) and exc.status in statuses


def _rejected_token(exc: Exception, endpoint: Endpoint) -> StoreAuthError:
    return StoreAuthError(
        f"{endpoint.what} rejected the token: check UPSTASH_REDIS_REST_TOKEN "
        "(it must be the database's REST token, not a read-only one)"
    )


def _not_found(exc: Exception, endpoint: Endpoint) -> StoreSettingsError:
    return StoreSettingsError(
        f"{endpoint.what} answered HTTP 404: check {endpoint.variable} "
        "(the database's REST URL, with no path)"
    )


def _server_error(exc: Exception, endpoint: Endpoint) -> StoreUnavailableError:
    return StoreUnavailableError(f"{endpoint.what} answered {exc}; try again later")


def _not_json(exc: Exception, endpoint: Endpoint) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"{endpoint.what} answered with something that is not JSON (an outage or a proxy error page); "
        "try again later"
    )


# No answer, a 5xx, an answer that is not JSON (a proxy's error page), or a busy server:
# the command may not have run, and running a save twice is harmless.
UPSTASH_ERRORS = (
    # The client decodes every reply as strict UTF-8.
    ErrorRule(UnicodeDecodeError, not_utf8),
    ErrorRule(UpstashError, foreign_type, when=starts_with("WRONGTYPE")),
    ErrorRule(HttpStatusError, _rejected_token, when=_status(401, 403)),
    ErrorRule(HttpStatusError, _not_found, when=_status(404)),
    ErrorRule(HttpStatusError, _server_error, retry=True),  # only 5xx are left: see the hook above
    ErrorRule(httpx.TransportError, unreachable, retry=True),
    ErrorRule(json.JSONDecodeError, _not_json, retry=True),
    ErrorRule(
        UpstashError,
        _rejected_token,
        when=contains("WRONGPASS", "NOAUTH", "NOPERM", "UNAUTHORIZED", "INVALID OR MISSING AUTH TOKEN"),
    ),
    ErrorRule(UpstashError, busy, when=is_busy, retry=True),
    ErrorRule(UpstashError, refused),
)


class UpstashStore(RedisProtocolStore):
    """Sessions in Upstash Redis: every read is one GET, every save one EVALSHA."""

    backend = "upstash"
    errors = UPSTASH_ERRORS
    key_locking = True

    def __init__(self, url: str, token: str, limits: Limits, timeout_seconds: float, retries: int) -> None:
        endpoint = Endpoint("Upstash", redact_url(url), "UPSTASH_REDIS_REST_URL")
        super().__init__(limits, timeout_seconds, retries, endpoint)
        parts = urlsplit(url)
        self._tls_address = (parts.hostname or "", parts.port or 443) if parts.scheme == "https" else None
        # Retries are ours (100 ms, then 200 ms apart, within the timeout); the client's own
        # wait 3 s each and would outlive the timeout.
        self._client = UpstashRedis(url=url, token=token, rest_retries=0, allow_telemetry=False)
        # The client reads only the JSON body, so a 503 with a JSON error would read like a refused
        # command; the status, seen first, tells an outage from bad credentials or a wrong URL.
        self._client._http._client.event_hooks["response"].append(_raise_for_telling_status)

    async def _command(self, *args: Argument) -> object:
        return await self._client.execute(list(args))

    async def _tail(self, key: str, size: int) -> tuple[str, bool]:
        # The client decodes every reply as strict UTF-8: a window that starts inside a
        # character fails, and one starting a byte later (at most three) does not.
        for skip in range(4):
            try:
                data = await self._command("GETRANGE", key, -(size - skip), -1)
            except UnicodeDecodeError:
                continue
            if not isinstance(data, str):
                raise StoreError(f"Upstash answered GETRANGE with a {type(data).__name__}")
            return data, len(data.encode("utf-8")) < size - skip
        raise CorruptSessionError(
            "the value stored at the session key is not UTF-8 text; it was left unchanged"
        )

    def _is_noscript(self, exc: Exception) -> bool:
        return isinstance(exc, UpstashError) and "NOSCRIPT" in str(exc).upper()

    async def _plain_port_error(self) -> StoreSettingsError | None:
        if self._tls_address is None:
            return None
        host, port = self._tls_address
        greeting = f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
        if await answers_in_plain(host, port, greeting, (b"HTTP/",)):
            return plain_endpoint_error(self.endpoint, "http://")
        return None

    async def aclose(self) -> None:
        await self._client.close()
