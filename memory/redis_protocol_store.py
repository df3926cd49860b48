"""What the Redis and Upstash backends share: key layout, the append script, timeouts, retries."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar, TypeVar

import anyio

from memory.append_script import LuaScript, append_arguments, append_script, parse_append_reply
from memory.codec import decode_session, decode_tail
from memory.errors import StoreAuthError, StoreError, StoreSettingsError, StoreUnavailableError
from memory.exception_map import Endpoint, ErrorTable, map_exceptions, rule_for
from memory.limits import Limits
from memory.models import BatchSaveResult, ChatTurn, NewTurn, SaveResult, TurnOutcome
from memory.planning import check_last, newest, plan_turns
from memory.save_errors import not_a_session, session_full, unavailable_during_save
from memory.store import SessionStore

logger = logging.getLogger(__name__)

Argument = str | int
T = TypeVar("T")

# A first guess at a stored turn's size, in bytes, until this process has seen some.
_INITIAL_TURN_BYTES = 512
# A tail window holds this much more than the turns asked for, so that one read suffices.
_WINDOW_MARGIN = 1.25


class RedisProtocolStore(ABC):
    """A session store on a Redis-protocol server: GET or GETRANGE to read, one Lua script to append."""

    backend: str
    # The backend's client exceptions and the memory errors they become.
    errors: ClassVar[ErrorTable]
    # Upstash's flag that limits a script's lock to its keys; Redis refuses it.
    key_locking: bool = False

    def __init__(self, limits: Limits, timeout_seconds: float, retries: int, endpoint: Endpoint) -> None:
        self._limits = limits
        self._timeout = timeout_seconds
        self._retries = retries
        self._turn_bytes = float(_INITIAL_TURN_BYTES)
        self.endpoint = endpoint

    @property
    def location(self) -> str:
        return self.endpoint.location

    @abstractmethod
    async def _command(self, *args: Argument) -> object:
        """Send one command; raise the client's own exceptions."""

    @abstractmethod
    async def _tail(self, key: str, size: int) -> tuple[str, bool]:
        """About the last `size` bytes of the value, from a character boundary, and whether
        that is the whole value ('' and True for a missing key)."""

    @abstractmethod
    def _is_noscript(self, exc: Exception) -> bool: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    @property
    def script(self) -> LuaScript:
        return append_script(self.key_locking)

    def namespaced(self, namespace: str) -> SessionStore:
        view = copy.copy(self)  # shares the client, so closing either closes both
        view._limits = dataclasses.replace(self._limits, key_prefix=self._limits.key_prefix + namespace)
        return view

    async def _plain_port_error(self) -> StoreSettingsError | None:
        """The error for a TLS URL aimed at a port that speaks plain text, or None."""
        return None

    async def check(self, timeout_seconds: float | None = None) -> None:
        """One PING, so the settings are proven before the first tool call needs them."""
        try:
            with self._within_timeout(timeout_seconds):
                await self._call(lambda: self._command("PING"))
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
        last = check_last(last)
        with self._within_timeout():
            if last is not None:
                tail = await self._read_tail(key, session_id, last)
                if tail is not None:
                    return tail
            value = await self._call(lambda: self._command("GET", key))
        if value is None:
            return []
        if not isinstance(value, (str, bytes)):
            raise StoreError(f"the store answered GET with a {type(value).__name__}")
        return newest(decode_session(value, session_id), last)

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        return (await self.save_turns(session_id, [turn])).single()

    async def save_turns(self, session_id: str, turns: Sequence[ChatTurn | NewTurn]) -> BatchSaveResult:
        key = self._limits.key_for(session_id)
        planned = plan_turns(turns, self._limits.max_content_chars)
        self._learn_turn_bytes(sum(len(turn.text.encode()) for turn in planned), len(planned))
        first = append_arguments(planned, self._limits.ttl_seconds, self._limits.max_session_bytes)
        # A retry may follow an attempt that ran: every turn is then looked for as it was
        # sent, so that the earlier attempt's write is found rather than stored again.
        again = append_arguments(
            [dataclasses.replace(turn, mode="keep") for turn in planned],
            self._limits.ttl_seconds,
            self._limits.max_session_bytes,
        )
        attempts = 0

        async def send() -> object:
            nonlocal attempts
            attempts += 1
            return await self._eval(key, first if attempts == 1 else again)

        try:
            with self._within_timeout():
                reply = parse_append_reply(await self._call(send), len(planned))
        except StoreUnavailableError as exc:
            raise unavailable_during_save(exc, planned) from exc
        if reply.outcome == "not_a_session":
            raise not_a_session(session_id)
        if reply.outcome == "session_full":
            raise session_full(session_id, self._limits)
        retried = attempts > 1
        outcomes = [
            # After a retry, an equal turn is the earlier attempt's own write.
            TurnOutcome(timestamp=stamp, stored=state == 1 or retried)
            for stamp, state in zip(reply.timestamps, reply.states, strict=True)
        ]
        created = reply.created or (retried and reply.states[0] == 2)
        return BatchSaveResult(
            session_id=session_id, new_session=created, turns=outcomes, expires_at=self._limits.expires_at()
        )

    async def delete_session(self, session_id: str) -> bool:
        key = self._limits.key_for(session_id)
        with self._within_timeout():
            deleted = await self._call(lambda: self._command("DEL", key))
        return bool(deleted)

    async def _eval(self, key: str, arguments: list[str]) -> object:
        script = self.script
        try:
            return await self._command("EVALSHA", script.sha1, 1, key, *arguments)
        except Exception as exc:
            if not self._is_noscript(exc):
                raise
        # The script cache is empty (a restart, SCRIPT FLUSH): send the source once.
        logger.debug("append script not cached by the store; sending it with EVAL")
        return await self._command("EVAL", script.source, 1, key, *arguments)

    async def _read_tail(self, key: str, session_id: str, last: int) -> list[ChatTurn] | None:
        """The newest `last` turns from a window at the value's end, widened while too short.

        None when the window cannot be read on its own: the caller then reads the value
        whole, which reports a corrupt one with its position.
        """
        size = int(last * self._turn_bytes * _WINDOW_MARGIN) + 64
        while True:
            window, whole = await self._call(functools.partial(self._tail, key, size))
            if whole and not window:
                return []  # no such key, as GET would say
            turns = decode_session(window, session_id) if whole else decode_tail(window, session_id)
            if turns is None:
                return None
            if turns:
                self._learn_turn_bytes(len(window.encode("utf-8")), len(turns))
            if whole or len(turns) >= last:
                return turns[-last:]
            size = max(2 * size, int(last * self._turn_bytes * _WINDOW_MARGIN) + 64)

    def _learn_turn_bytes(self, total_bytes: int, count: int) -> None:
        # A moving average: recent sessions matter more than old ones.
        self._turn_bytes = 0.8 * self._turn_bytes + 0.2 * (total_bytes / count)

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

    async def _call(self, send: Callable[[], Awaitable[T]]) -> T:
        """Send, retrying failures that may not have reached the store, and translate errors."""
        with map_exceptions(self.errors, self.endpoint):
            attempt = 0
            while True:
                try:
                    return await send()
                except Exception as exc:
                    rule = rule_for(self.errors, exc)
                    if rule is None or not rule.retry or attempt >= self._retries:
                        raise
                    attempt += 1
                    logger.debug("retrying after %s", type(exc).__name__)
                    await anyio.sleep(0.05 * 2**attempt)
