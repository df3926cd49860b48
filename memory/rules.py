"""What every backend enforces, so that all of them behave the same."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from memory.codec import turn_prefix
from memory.config import StoreConfig
from memory.errors import (
    CorruptSessionError,
    InvalidRequestError,
    SessionFullError,
    StoreUnavailableError,
    TurnTooLargeError,
)
from memory.keys import check_session_id, session_key
from memory.models import ChatTurn, NewTurn
from memory.script import PlannedTurn

# A batch larger than this is refused: it would be one huge command and one long lock.
MAX_BATCH_TURNS = 100


@dataclass(frozen=True)
class Limits:
    """The key layout, TTL and size limits taken from the config."""

    key_prefix: str
    ttl_seconds: int
    max_content_chars: int
    max_session_bytes: int

    @classmethod
    def from_config(cls, config: StoreConfig) -> Limits:
        return cls(
            key_prefix=config.key_prefix,
            ttl_seconds=config.session_ttl_seconds,
            max_content_chars=config.max_content_chars,
            max_session_bytes=config.max_session_bytes,
        )

    def key_for(self, session_id: str) -> str:
        return session_key(self.key_prefix, check_session_id(session_id))

    def plan(self, turns: Sequence[ChatTurn | NewTurn]) -> list[PlannedTurn]:
        """Check the turns and give each its timestamp and how an equal stored turn counts.

        A caller's timestamp makes an equal stored turn a retry ('keep'); the server's clock
        makes it another message, so the timestamp moves past it ('move').
        """
        if not turns:
            raise InvalidRequestError("there are no turns to save")
        if len(turns) > MAX_BATCH_TURNS:
            raise InvalidRequestError(f"{len(turns)} turns in one save; the maximum is {MAX_BATCH_TURNS}")
        planned = []
        for index, turn in enumerate(turns):
            if len(turn.content) > self.max_content_chars:
                which = f"turn {index}'s" if len(turns) > 1 else "the turn's"
                raise TurnTooLargeError(
                    f"{which} content is {len(turn.content)} characters; "
                    f"the maximum is {self.max_content_chars}"
                )
            if turn.timestamp is None:
                planned.append(
                    PlannedTurn(turn.role, turn.content, turn_prefix(turn), server_stamp(), "move")
                )
            else:
                planned.append(
                    PlannedTurn(turn.role, turn.content, turn_prefix(turn), turn.timestamp, "keep")
                )
        return planned

    def expires_at(self, now: int | None = None) -> int:
        return (now_ms() if now is None else now) + self.ttl_seconds * 1000


def check_last(last: int | None) -> None:
    if last is not None and (isinstance(last, bool) or last < 1):
        raise InvalidRequestError(f"last must be at least 1 (got {last}); omit it for the whole session")


def newest(turns: list[ChatTurn], last: int | None) -> list[ChatTurn]:
    return turns if last is None else turns[-last:]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _ServerClock:
    """Milliseconds, never the same twice in this process.

    Two saves of equal text stamped in one millisecond are two messages; giving each its
    own stamp lets a retried save recognise its own earlier attempt by its timestamp.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def stamp(self) -> int:
        with self._lock:
            self._last = max(now_ms(), self._last + 1)
            return self._last


server_stamp = _ServerClock().stamp


def session_full(session_id: str, limits: Limits) -> SessionFullError:
    return SessionFullError(
        f"session {session_id!r} would exceed the maximum stored size of "
        f"{limits.max_session_bytes} bytes; nothing was saved (start a new session or delete this one)"
    )


def not_a_session(session_id: str) -> CorruptSessionError:
    return CorruptSessionError(
        f"the value stored for session {session_id!r} is not, at its ends, a JSON array of turns; "
        "it was left unchanged and nothing was saved"
    )


def unavailable_during_save(
    error: StoreUnavailableError, planned: Sequence[PlannedTurn]
) -> StoreUnavailableError:
    """The error with what a caller needs to retry safely: the timestamps this save used."""
    stamps = ", ".join(str(turn.timestamp) for turn in planned)
    which = "timestamp" if len(planned) == 1 else "timestamps (in order)"
    wrapped = StoreUnavailableError(
        f"{error} (the save may have reached the store: retry with {which} {stamps}, "
        "so that it is not stored twice)"
    )
    wrapped.timestamps = tuple(turn.timestamp for turn in planned)
    return wrapped
