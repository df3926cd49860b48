"""The identity provider's signing keys, fetched from its JWKS URL and cached."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import anyio
import httpx
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKSetError

logger = logging.getLogger(__name__)

# Asymmetric algorithms only: with a public key set, an HMAC or "none" token would be forgeable.
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_JWKS_BYTES = 256 * 1024


class JwksCache:
    """Keys by `kid`, kept for `max_age` seconds; an unknown `kid` refetches at most every `min_refetch`.

    One fetch runs at a time, bounded as a whole by `timeout`. Lookups that need keys share the
    fetch under way; a lookup whose key is cached never waits for one, even when its key is due
    for a refresh (the refresh then runs in the background).
    """

    def __init__(
        self, url: str, *, timeout: float = 5.0, max_age: float = 300.0, min_refetch: float = 30.0
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._max_age = max_age
        self._min_refetch = min_refetch
        self._keys: list[PyJWK] = []
        self._fetched_at = -float("inf")  # when the last fetch started
        self._fetch_done: anyio.Event | None = None  # set while a fetch is under way
        self._fetch_task: asyncio.Task[None] | None = None

    async def key_for(self, kid: str | None) -> PyJWK | None:
        """The key a token names (or the only key, for a token without `kid`); None if unknown."""
        if time.monotonic() - self._fetched_at > self._max_age:
            self._start_fetch()
        key = self._find(kid)
        if key is None and (
            self._fetch_done is not None or time.monotonic() - self._fetched_at > self._min_refetch
        ):
            # The provider may have rotated its keys since the last fetch.
            await self._start_fetch().wait()
            key = self._find(kid)
        return key

    async def refresh(self) -> None:
        """Fetch the key set (or wait for the fetch under way); on failure keep the keys known and log why."""
        await self._start_fetch().wait()

    def _start_fetch(self) -> anyio.Event:
        """The fetch under way, or a new one: set when it ends, however it ends."""
        if self._fetch_done is None:
            self._fetch_done = anyio.Event()
            self._fetched_at = time.monotonic()
            # A task of its own, not the caller's: a lookup that does not need the new keys goes
            # on at once, and a caller that goes away (a client hanging up) cancels no one's fetch.
            # anyio has no detached tasks; the server always runs on asyncio.
            self._fetch_task = asyncio.get_running_loop().create_task(self._fetch_and_keep(self._fetch_done))
        return self._fetch_done

    async def _fetch_and_keep(self, done: anyio.Event) -> None:
        try:
            self._keys = await self._fetch()
        except (httpx.HTTPError, ValueError, PyJWKSetError, TimeoutError) as exc:
            logger.warning(
                "could not fetch the JWKS from MCP_JWT_JWKS_URL (%s); %d key(s) stay in use",
                self._reason(exc),
                len(self._keys),
            )
        finally:
            self._fetch_done = None
            self._fetch_task = None
            done.set()

    async def _fetch(self) -> list[PyJWK]:
        # One deadline for the whole fetch (connect, every read, the body): httpx's timeout bounds
        # each read alone, so a provider sending a byte at a time would hold a fetch for ever.
        with anyio.fail_after(self._timeout):
            async with (
                httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client,
                client.stream("GET", self._url, headers={"Accept": "application/json"}) as response,
            ):
                response.raise_for_status()
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError(f"the key set is over {MAX_JWKS_BYTES} bytes")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the key set is not a JSON object")
        keys = [key for key in PyJWKSet.from_dict(document).keys if key.algorithm_name in SIGNING_ALGORITHMS]
        if not keys:
            raise ValueError("the key set holds no RSA, EC or EdDSA signing key")
        return keys

    def _find(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return next((key for key in self._keys if key.key_id == kid), None)

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError):
            return f"no complete answer within {self._timeout:g} s"
        if isinstance(exc, httpx.HTTPStatusError):
            return f"HTTP {exc.response.status_code}"
        if isinstance(exc, httpx.HTTPError):
            return type(exc).__name__
        if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
            return "the key set is not JSON"
        return str(exc)
