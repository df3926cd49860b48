"""The data model shared with the design note's TypeScript layer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["user", "assistant"]

# Timestamps come from JavaScript's Date.now(); beyond this a JS reader loses precision.
MAX_SAFE_INTEGER = 2**53 - 1


class ChatTurn(BaseModel):
    """One turn of a conversation: `{role, content, timestamp}` in milliseconds since the epoch."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: Role
    content: str
    timestamp: int = Field(ge=0, le=MAX_SAFE_INTEGER)

    @field_validator("content")
    @classmethod
    def _encodable_as_utf8(cls, content: str) -> str:
        # A lone surrogate (e.g. from a JSON "\ud800" escape) has no UTF-8 form,
        # so it could never be stored; refuse it here rather than at the store.
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("content holds an unpaired surrogate, which is not valid Unicode text") from exc
        return content


class SaveResult(BaseModel):
    """What a save did."""

    session_id: str
    stored: bool = Field(description="False when this exact turn was already in the session.")
    turn_count: int | None = Field(description="Turns in the session after the save, when known.")
    expires_at: int = Field(description="When the session expires, in milliseconds since the epoch.")
