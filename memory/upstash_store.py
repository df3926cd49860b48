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
    StoreUnavailableError,
)
from memory.rules import Limits
from memory.scripted import Argument, ScriptedStore

_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "UNAUTHORIZED", "INVALID OR MISSING AUTH TOKEN")


class UpstashStore(ScriptedStore):
    """Sessions in Upstash Redis: every read is one GET, every save one EVALSHA."""

    backend = "upstash"
    key_locking = True

    def __init__(self, url: str, token: str, limits: Limits, timeout_seconds: float, retries: int) -> None:
        super().__init__(limits, timeout_seconds, retries)
        parts = urlsplit(url)
        self._location = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        # Retries are ours (100 ms, then 200 ms apart, within the timeout); the client's own
        # wait 3 s each and would outlive the timeout.
        self._client = UpstashRedis(url=url, token=token, rest_retries=0, allow_telemetry=False)

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
        # No answer, or an answer that is not JSON (a proxy's 5xx page): the
        # command may not have run.
        return isinstance(exc, (httpx.TransportError, json.JSONDecodeError))

    def _is_noscript(self, exc: Exception) -> bool:
        return isinstance(exc, UpstashError) and "NOSCRIPT" in str(exc).upper()

    def _translate(self, exc: Exception) -> SessionMemoryError | None:
        if isinstance(exc, httpx.TransportError):
            return StoreUnavailableError(
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
                return StoreAuthError(
                    "Upstash rejected the token: check UPSTASH_REDIS_REST_TOKEN "
                    "(it must be the database's REST token)"
                )
            return StoreError(f"Upstash refused the command: {message}")
        return None

    async def aclose(self) -> None:
        await self._client.close()
