"""The identity provider's signing keys, fetched from its JWKS URL and cached."""

from __future__ import annotations

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
    """Keys by `kid`, kept for `max_age` seconds; an unknown `kid` refetches at most every `min_refetch`."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, max_age: float = 300.0, min_refetch: float = 30.0
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._max_age = max_age
        self._min_refetch = min_refetch
        self._keys: list[PyJWK] = []
        self._fetched_at = -float("inf")
        self._lock = anyio.Lock()

    async def key_for(self, kid: str | None) -> PyJWK | None:
        """The key a token names (or the only key, for a token without `kid`); None if unknown."""
        if time.monotonic() - self._fetched_at > self._max_age:
            await self.refresh()
        key = self._find(kid)
        if key is None and time.monotonic() - self._fetched_at > self._min_refetch:
            # The provider may have rotated its keys since the last fetch.
            await self.refresh()
            key = self._find(kid)
        return key

    async def refresh(self) -> None:
        """Fetch the key set; on failure keep the keys already known and log why."""
        async with self._lock:
            started = time.monotonic()
            if started - self._fetched_at < 1.0:
                return  # another request fetched it just now
            self._fetched_at = started
            try:
                self._keys = await self._fetch()
            except (httpx.HTTPError, ValueError, PyJWKSetError) as exc:
                logger.warning(
                    "could not fetch the JWKS from MCP_JWT_JWKS_URL (%s); %d key(s) stay in use",
                    _reason(exc),
                    len(self._keys),
                )

    async def _fetch(self) -> list[PyJWK]:
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            response = await client.get(self._url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError(f"the key set is over {MAX_JWKS_BYTES} bytes")
        document = response.json()
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


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.HTTPError):
        return type(exc).__name__
    return str(exc)
