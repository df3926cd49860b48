"""The Upstash backend: the Upstash REST API through the official `upstash-redis` client."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
from upstash_redis.asyncio import Redis as UpstashRedis
from upstash_redis.errors import UpstashError

from memory.errors import (
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

_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "NOPERM", "UNAUTHORIZED", "INVALID OR MISSING AUTH TOKEN")
_BUSY_MARKERS = ("BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")


class HttpStatusError(Exception):
    """Upstash answered with an HTTP status that says more than its body: 401, 403, 404 or 5xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def _raise_for_telling_status(response: httpx.Response) -> None:
    status = response.status_code
    if status in (401, 403, 404) or status >= 500:
        raise HttpStatusError(status)


class UpstashStore(ScriptedStore):
    """Sessions in Upstash Redis: every read is one GET, every save one EVALSHA."""

    backend = "upstash"
    key_locking = True

    def __init__(self, url: str, token: str, limits: Limits, timeout_seconds: float, retries: int) -> None:
        super().__init__(limits, timeout_seconds, retries)
        parts = urlsplit(url)
        self._location = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self._tls_address = (parts.hostname or "", parts.port or 443) if parts.scheme == "https" else None
        # Retries are ours (100 ms, then 200 ms apart, within the timeout); the client's own
        # wait 3 s each and would outlive the timeout.
        self._client = UpstashRedis(url=url, token=token, rest_retries=0, allow_telemetry=False)
        # The client reads only the JSON body, so a 503 with a JSON error would read like a refused
        # command; the status, seen first, tells an outage from bad credentials or a wrong URL.
        self._client._http._client.event_hooks["response"].append(_raise_for_telling_status)

    @property
    def location(self) -> str:
        return self._location

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

    def _is_transient(self, exc: Exception) -> bool:
        # No answer, a 5xx, an answer that is not JSON (a proxy's error page), or a busy
        # server: the command may not have run, and running a save twice is harmless.
        if isinstance(exc, HttpStatusError):
            return exc.status >= 500
        if isinstance(exc, UpstashError):
            return str(exc).upper().startswith(_BUSY_MARKERS)
        return isinstance(exc, (httpx.TransportError, json.JSONDecodeError))

    def _is_noscript(self, exc: Exception) -> bool:
        return isinstance(exc, UpstashError) and "NOSCRIPT" in str(exc).upper()

    def _translate(self, exc: Exception) -> SessionMemoryError | None:
        if isinstance(exc, HttpStatusError):
            return self._status_error(exc.status)
        if isinstance(exc, httpx.TransportError):
            return network_error(
                exc, f"Upstash at {self._location}", "UPSTASH_REDIS_REST_URL"
            ) or StoreUnavailableError(
                f"could not reach Upstash at {self._location} ({type(exc).__name__}); try again later"
            )
        if isinstance(exc, json.JSONDecodeError):
            return StoreUnavailableError(
                f"Upstash at {self._location} answered with something that is not JSON "
                "(an outage or a proxy error page); try again later"
            )
        if isinstance(exc, UnicodeDecodeError):
            return CorruptSessionError(
                "the value stored at the session key is not UTF-8 text; it was left unchanged"
            )
        if isinstance(exc, UpstashError):
            message = str(exc)
            if any(marker in message.upper() for marker in _AUTH_MARKERS):
                return self._status_error(401)
            if message.upper().startswith(_BUSY_MARKERS):
                return StoreUnavailableError(
                    f"Upstash at {self._location} is busy ({message.split()[0].upper()}); try again later"
                )
            return StoreError(f"Upstash refused the command: {message}")
        return None

    def _status_error(self, status: int) -> StoreError:
        if status in (401, 403):
            return StoreAuthError(
                f"Upstash at {self._location} rejected the token: check UPSTASH_REDIS_REST_TOKEN "
                "(it must be the database's REST token, not a read-only one)"
            )
        if status == 404:
            return StoreSettingsError(
                f"Upstash at {self._location} answered HTTP 404: check UPSTASH_REDIS_REST_URL "
                "(the database's REST URL, with no path)"
            )
        return StoreUnavailableError(f"Upstash at {self._location} answered HTTP {status}; try again later")

    async def _plain_port_error(self) -> StoreSettingsError | None:
        if self._tls_address is None:
            return None
        host, port = self._tls_address
        greeting = f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()
        if await answers_in_plain(host, port, greeting, (b"HTTP/",)):
            return plain_endpoint_error(f"Upstash at {self._location}", "UPSTASH_REDIS_REST_URL", "http://")
        return None

    async def aclose(self) -> None:
        await self._client.close()
