"""What the tools return, as published in their output schemas; the JSON resource repeats SessionTurns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from memory import BatchSaveResult, ChatTurn, SaveResult, TurnOutcome


def inline_schema(model: type[BaseModel]) -> WithJsonSchema:
    """A flat model's JSON schema written out where it is used: no `$ref`, no `additionalProperties`.

    Some hosts resolve no `$ref`; openai-agents then cannot make a tool's schema strict (and
    silently sends it non-strict), and google-genai's MCP converter crashes on a nested
    `additionalProperties: false`. The model still refuses unknown keys when it validates.
    """
    schema: dict[str, Any] = model.model_json_schema()
    schema.pop("additionalProperties", None)
    return WithJsonSchema(schema)


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


class SavedTurn(BaseModel):
    session_id: str = Field(description="The session the turn was saved in. Pass it to every later call.")
    new_session: bool = Field(description="True when this call created the session.")
    stored: bool = Field(
        description="False when this exact turn (same role, content and timestamp) was already saved: "
        "a retry; nothing changed."
    )
    timestamp: int = Field(
        description="The turn's timestamp as stored, ms since the epoch. Repeat it when retrying this call."
    )
    expires_at: int = Field(description="When the session expires unless saved to again, ms since the epoch.")
    expires_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")

    @classmethod
    def of(cls, result: SaveResult) -> SavedTurn:
        return cls(
            session_id=result.session_id,
            new_session=result.new_session,
            stored=result.stored,
            timestamp=result.timestamp,
            expires_at=result.expires_at,
            expires_at_iso=iso_utc(result.expires_at),
        )


class SavedTurns(BaseModel):
    session_id: str = Field(description="The session the turns were saved in. Pass it to every later call.")
    new_session: bool = Field(description="True when this call created the session.")
    turns: list[Annotated[TurnOutcome, inline_schema(TurnOutcome)]] = Field(
        description="One entry per turn given, in order: its timestamp as stored (repeat it when "
        "retrying) and whether it was stored (false: an equal turn was already saved)."
    )
    expires_at: int = Field(description="When the session expires unless saved to again, ms since the epoch.")
    expires_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")

    @classmethod
    def of(cls, result: BatchSaveResult) -> SavedTurns:
        return cls(
            session_id=result.session_id,
            new_session=result.new_session,
            turns=result.turns,
            expires_at=result.expires_at,
            expires_at_iso=iso_utc(result.expires_at),
        )


class SessionTurns(BaseModel):
    session_id: str
    # Inlined also because validating 20 turns through a $ref costs a Python client ~40% more.
    turns: list[Annotated[ChatTurn, inline_schema(ChatTurn)]] = Field(
        description="Oldest first. Empty if the session is unknown or expired."
    )
    turn_count: int = Field(description="How many turns are listed here.")

    @classmethod
    def of(cls, session_id: str, turns: Sequence[ChatTurn]) -> SessionTurns:
        return cls(session_id=session_id, turns=list(turns), turn_count=len(turns))


class DeletedSession(BaseModel):
    session_id: str
    deleted: bool = Field(description="False if there was no such session (or it had expired).")
