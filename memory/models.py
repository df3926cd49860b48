"""The data model shared with the design note's TypeScript layer, and the store interface."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Role = Literal["user", "assistant"]

# Timestamps come from JavaScript's Date.now(); beyond this a JS reader loses precision.
MAX_SAFE_INTEGER = 2**53 - 1


def _encodable_as_utf8(content: str, info: ValidationInfo) -> str:
    # A lone surrogate (e.g. from a JSON "\ud800" escape) has no UTF-8 form,
    # so it could never be stored; refuse it here rather than at the store.
    if info.mode == "json":
        return content  # pydantic's JSON parser refuses lone surrogates itself
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("content holds an unpaired surrogate, which is not valid Unicode text") from exc
    return content


class ChatTurn(BaseModel):
    """One stored turn of a conversation: `{role, content, timestamp}`, in ms since the epoch."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: Role
    content: str
    timestamp: int = Field(ge=0, le=MAX_SAFE_INTEGER)

    check_utf8 = field_validator("content")(_encodable_as_utf8)


class NewTurn(BaseModel):
    """A turn to save. With a timestamp, saving it again is recognised as a retry;
    without one, the store stamps it with its clock and never merges it with another."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: Role
    content: str
    timestamp: int | None = Field(default=None, ge=0, le=MAX_SAFE_INTEGER)

    check_utf8 = field_validator("content")(_encodable_as_utf8)


class TurnOutcome(BaseModel):
    """What a save did with one turn."""

    timestamp: int = Field(description="The turn's timestamp as stored, in ms since the epoch.")
    stored: bool = Field(description="False when an equal turn (same role, content and timestamp) was there.")


class BatchSaveResult(BaseModel):
    """What a save of several turns did."""

    session_id: str
    new_session: bool = Field(description="True when this save created the session.")
    turns: list[TurnOutcome] = Field(description="One entry per turn given, in order.")
    expires_at: int = Field(description="When the session expires, in milliseconds since the epoch.")

    def single(self) -> SaveResult:
        """The result of a save of one turn."""
        (turn,) = self.turns
        return SaveResult(
            session_id=self.session_id,
            new_session=self.new_session,
            stored=turn.stored,
            timestamp=turn.timestamp,
            expires_at=self.expires_at,
        )


class SaveResult(BaseModel):
    """What a save of one turn did."""

    session_id: str
    new_session: bool = Field(description="True when this save created the session.")
    stored: bool = Field(description="False when an equal turn (same role, content and timestamp) was there.")
    timestamp: int = Field(description="The turn's timestamp as stored, in ms since the epoch.")
    expires_at: int = Field(description="When the session expires, in milliseconds since the epoch.")


class SessionStore(Protocol):
    """Short-term chat memory: one JSON array of turns per session, with a TTL.

    An async context manager: leaving `async with` closes it.
    """

    @property
    def backend(self) -> str:
        """`upstash`, `redis` or `sqlite`."""
        ...

    @property
    def location(self) -> str:
        """Where the data lives, safe to log (no credentials)."""
        ...

    async def get_session(self, session_id: str, last: int | None = None) -> list[ChatTurn]:
        """The turns oldest first (only the newest `last` when given); [] if missing or expired."""
        ...

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        """Append a turn atomically and reset the TTL (see `save_turns`)."""
        ...

    async def save_turns(self, session_id: str, turns: Sequence[ChatTurn | NewTurn]) -> BatchSaveResult:
        """Append turns atomically, in order, and reset the TTL.

        A turn with a timestamp that equals a stored turn (role, content, timestamp) is a
        retry and is not stored again; a turn without one is stamped with the store's clock,
        moved to the next free millisecond past an equal turn, and never merged.
        """
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Forget a session; False if there was none."""
        ...

    async def check(self, timeout_seconds: float | None = None) -> None:
        """One cheap command (PING, or a trivial query); raises what a tool call would raise."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...

    def view(self, namespace: str) -> SessionStore:
        """This open store (same connection) with `namespace` after the key prefix."""
        ...

    async def __aenter__(self) -> SessionStore: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None: ...
