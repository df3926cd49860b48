"""`GET /readyz`: can the store serve right now? One cheap command, with a short deadline."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse, Response

from memory import SessionMemoryError, SessionStore, StoreAuthError, StoreSettingsError, StoreUnavailableError

logger = logging.getLogger(__name__)

READY_CHECK_SECONDS = 2.0


def public_reason(error: SessionMemoryError) -> str:
    """What a probe may be told: the kind of problem, never a URL, a path or a token."""
    if isinstance(error, StoreAuthError):
        return "the store rejected the credentials (a server configuration problem)"
    if isinstance(error, StoreSettingsError):
        return "a store setting is wrong (a server configuration problem; see the server log)"
    if isinstance(error, StoreUnavailableError):
        return f"the store is unavailable or did not answer within {READY_CHECK_SECONDS:g} s"
    return "the store failed (see the server log)"


class ReadinessProbe:
    """Checks the store per request; logs the detail once when readiness changes, not per poll."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._was_ready = True

    async def answer(self) -> Response:
        try:
            await self._store.check(READY_CHECK_SECONDS)
        except SessionMemoryError as exc:
            if self._was_ready:
                logger.warning("not ready: %s", exc)
            self._was_ready = False
            body = {"status": "unavailable", "store": self._store.backend, "reason": public_reason(exc)}
            return JSONResponse(body, status_code=503)
        if not self._was_ready:
            logger.warning("ready again: the %s store answers", self._store.backend)
        self._was_ready = True
        return JSONResponse({"status": "ready", "store": self._store.backend})
