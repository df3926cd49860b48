"""What every backend enforces, so that all of them behave the same."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from memory.codec import encode_turn
from memory.errors import CorruptSessionError, InvalidRequestError, SessionFullError, TurnTooLargeError
from memory.keys import check_session_id, session_key
from memory.models import ChatTurn, SaveResult
from memory.settings import StoreSettings

AppendOutcome = Literal["stored", "duplicate", "session_full", "not_a_session"]


@dataclass(frozen=True)
class Limits:
    """The key layout, TTL and size limits taken from the settings."""

    key_prefix: str
    ttl_seconds: int
    max_content_chars: int
    max_session_bytes: int

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Limits:
        return cls(
            key_prefix=settings.key_prefix,
            ttl_seconds=settings.session_ttl_seconds,
            max_content_chars=settings.max_content_chars,
            max_session_bytes=settings.max_session_bytes,
        )

    def key_for(self, session_id: str) -> str:
        return session_key(self.key_prefix, check_session_id(session_id))

    def encode_new_turn(self, turn: ChatTurn) -> str:
        if len(turn.content) > self.max_content_chars:
            raise TurnTooLargeError(
                f"the turn's content is {len(turn.content)} characters; "
                f"the maximum is {self.max_content_chars}"
            )
        return encode_turn(turn)


def check_last(last: int | None) -> None:
    if last is not None and last < 1:
        raise InvalidRequestError(f"last must be at least 1 (got {last}); omit it for the whole session")


def newest(turns: list[ChatTurn], last: int | None) -> list[ChatTurn]:
    return turns if last is None else turns[-last:]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def save_result(
    outcome: AppendOutcome,
    turn_count: int | None,
    session_id: str,
    limits: Limits,
    expires_at: int | None = None,
) -> SaveResult:
    """Turn an append outcome into a result, or the error it stands for."""
    if outcome == "not_a_session":
        raise CorruptSessionError(
            f"the value stored for session {session_id!r} is not a JSON array of turns; "
            "it was left unchanged and the turn was not saved"
        )
    if outcome == "session_full":
        raise SessionFullError(
            f"session {session_id!r} would exceed the maximum stored size of "
            f"{limits.max_session_bytes} bytes; the turn was not saved (start a new session "
            "or delete this one)"
        )
    return SaveResult(
        session_id=session_id,
        stored=outcome == "stored",
        turn_count=turn_count,
        expires_at=expires_at if expires_at is not None else now_ms() + limits.ttl_seconds * 1000,
    )
