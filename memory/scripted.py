"""What the Redis and Upstash backends share: key layout, the append script, timeouts, retries."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from memory.codec import decode_session
from memory.errors import (
    CorruptSessionError,
    SessionMemoryError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
)
from memory.models import ChatTurn, SaveResult
from memory.rules import Limits, check_last, newest, save_result
from memory.script import append_arguments, append_turn_script, parse_append_reply

logger = logging.getLogger(__name__)

Argument = str | int


class ScriptedStore(ABC):
    """A session store on a Redis-protocol server: GET to read, one Lua script to append."""

    backend: str

    def __init__(self, limits: Limits, timeout_seconds: float, retries: int) -> None:
        self._limits = limits
        self._timeout = timeout_seconds
        self._retries = retries

    @property
    @abstractmethod
    def location(self) -> str: ...

    @abstractmethod
    async def _command(self, *args: Argument) -> object:
        """Send one command; raise the client's own exceptions."""

    @abstractmethod
    def _is_transient(self, exc: Exception) -> bool:
        """True if the command may not have reached the store and can be sent again."""

    @abstractmethod
    def _is_noscript(self, exc: Exception) -> bool: ...

    @abstractmethod
    def _translate(self, exc: Exception) -> SessionMemoryError | None:
        """The memory-layer error for a client exception, or None to let it propagate."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def _plain_port_error(self) -> StoreSettingsError | None:
        """The error for a TLS URL aimed at a port that speaks plain text, or None."""
        return None

    async def check(self, timeout_seconds: float | None = None) -> None:
        """One PING, so the settings are proven before the first tool call needs them."""
        try:
            with self._within_timeout(timeout_seconds):
                await self._call("PING")
        except StoreAuthError:
            raise
        except (StoreUnavailableError, StoreSettingsError):
            # A plain server mostly does not answer a TLS handshake at all: it waits for a line
            # of text, so the handshake times out (or fails, if the handshake held a newline).
            # Asking the port in plain text tells that apart from an outage or a certificate.
            misconfigured = await self._plain_port_error()
            if misconfigured is not None:
                raise misconfigured from None
            raise

    async def get_session(self, session_id: str, last: int | None = None) -> list[ChatTurn]:
        key = self._limits.key_for(session_id)
        check_last(last)
        with self._within_timeout():
            value = await self._call("GET", key)
        if value is None:
            return []
        if not isinstance(value, (str, bytes)):
            raise StoreError(f"the store answered GET with a {type(value).__name__}")
        return newest(decode_session(value, session_id), last)

    async def save_turn(self, session_id: str, turn: ChatTurn) -> SaveResult:
        key = self._limits.key_for(session_id)
        arguments = append_arguments(self._limits.encode_new_turn(turn), self._limits)
        script = append_turn_script()
        with self._within_timeout():
            try:
                reply = await self._call("EVALSHA", script.sha1, 1, key, *arguments, noscript_passes=True)
            except _NoScript:
                # The script cache is empty (a restart, SCRIPT FLUSH): send the source once.
                logger.debug("append script not cached by the store; sending it with EVAL")
                reply = await self._call("EVAL", script.source, 1, key, *arguments)
        outcome, count = parse_append_reply(reply)
        return save_result(outcome, count, session_id, self._limits)

    async def delete_session(self, session_id: str) -> bool:
        key = self._limits.key_for(session_id)
        with self._within_timeout():
            deleted = await self._call("DEL", key)
        return bool(deleted)

    @contextmanager
    def _within_timeout(self, seconds: float | None = None) -> Iterator[None]:
        """One deadline for a whole operation: retries and the NOSCRIPT fallback included."""
        seconds = self._timeout if seconds is None else seconds
        try:
            with anyio.fail_after(seconds):
                yield
        except TimeoutError as exc:
            raise StoreUnavailableError(
                f"the {self.backend} store did not answer within {seconds:g} s; try again later"
            ) from exc

    async def _call(self, *args: Argument, noscript_passes: bool = False) -> object:
        """Run a command, retrying failures that may not have reached the store.

        Retrying a save is safe: the script recognises a turn it already stored.
        """
        try:
            attempt = 0
            while True:
                try:
                    return await self._command(*args)
                except Exception as exc:
                    if noscript_passes and self._is_noscript(exc):
                        raise _NoScript from exc
                    if not self._is_transient(exc) or attempt >= self._retries:
                        raise
                    attempt += 1
                    logger.debug("retrying %s after %s", args[0], type(exc).__name__)
                    await anyio.sleep(0.05 * 2**attempt)
        except _NoScript:
            raise
        except Exception as exc:
            translated = foreign_value_error(exc) or self._translate(exc)
            if translated is None:
                raise
            raise translated from exc


def foreign_value_error(exc: Exception) -> CorruptSessionError | None:
    """The error for a key that holds something other than a session, from either client."""
    if isinstance(exc, UnicodeDecodeError):
        return CorruptSessionError(
            "the value stored at the session key is not UTF-8 text; it was left unchanged"
        )
    if str(exc).startswith("WRONGTYPE"):
        return CorruptSessionError(
            "the session key holds a Redis type other than a string; it was left unchanged"
        )
    return None


class _NoScript(Exception):
    """The store does not have the append script cached."""
