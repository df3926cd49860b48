"""The data model shared with the design note's TypeScript layer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["user", "assistant"]

# Timestamps come from JavaScript's Date.now(); beyond this a JS reader loses precision.
MAX_SAFE_INTEGER = 2**53 - 1


def _encodable_as_utf8(content: str) -> str:
    # A lone surrogate (e.g. from a JSON "\ud800" escape) has no UTF-8 form,
    # so it could never be stored; refuse it here rather than at the store.
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
