"""What the tools return, as published in their output schemas; the JSON resource repeats SessionTurns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from memory import MAX_SAFE_INTEGER, BatchSaveResult, ChatTurn, Role, SaveResult, SessionPage, TurnOutcome


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
    id: str = Field(description="The save's id, stored with the turn. Repeat it when retrying this call.")
    new_session: bool = Field(description="True when this call created the session.")
    stored: bool = Field(
        description="False when the turn was already saved (by an earlier attempt with this id, or as "
        "an equal turn with the same role, content and timestamp): a retry; nothing changed."
    )
    timestamp: int = Field(description="The turn's timestamp as stored, ms since the epoch.")
    expires_at: int = Field(description="When the session expires unless saved to again, ms since the epoch.")
    expires_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")
    dropped: int = Field(
        description="How many of the session's oldest turns this save dropped to keep it under its size limit"
    )

    @classmethod
    def of(cls, result: SaveResult) -> SavedTurn:
        return cls(
            session_id=result.session_id,
            id=result.id,
            new_session=result.new_session,
            stored=result.stored,
            timestamp=result.timestamp,
            expires_at=result.expires_at,
            expires_at_iso=iso_utc(result.expires_at),
            dropped=result.dropped,
        )


class SavedTurns(BaseModel):
    session_id: str = Field(description="The session the turns were saved in. Pass it to every later call.")
    id: str = Field(description="The save's id. Repeat it when retrying this call.")
    new_session: bool = Field(description="True when this call created the session.")
    turns: list[Annotated[TurnOutcome, inline_schema(TurnOutcome)]] = Field(
        description="One entry per turn given, in order: its timestamp as stored and whether it was "
        "stored (false: it was already saved)."
    )
    expires_at: int = Field(description="When the session expires unless saved to again, ms since the epoch.")
    expires_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")
    dropped: int = Field(
        description="How many of the session's oldest turns this save dropped to keep it under its size limit"
    )

    @classmethod
    def of(cls, result: BatchSaveResult) -> SavedTurns:
        return cls(
            session_id=result.session_id,
            id=result.id,
            new_session=result.new_session,
            turns=result.turns,
            expires_at=result.expires_at,
            expires_at_iso=iso_utc(result.expires_at),
            dropped=result.dropped,
        )


# Reads show the design note's {role, content, timestamp}: the id a turn is stored with serves
# retries only, and would cost every read tokens while telling the model nothing.
class ReadTurn(BaseModel):
    """One stored turn of a conversation: `{role, content, timestamp}`, in ms since the epoch."""

    model_config = ConfigDict(title="ChatTurn", extra="forbid", frozen=True, strict=True)

    role: Role
    content: str
    timestamp: int = Field(ge=0, le=MAX_SAFE_INTEGER)


class SessionTurns(BaseModel):
    session_id: str
    # Inlined also because validating 20 turns through a $ref costs a Python client ~40% more.
    turns: list[Annotated[ReadTurn, inline_schema(ReadTurn)]] = Field(
        description="Oldest first. Empty if the session is unknown or expired."
    )
    turn_count: int = Field(description="How many turns are listed here.")
    dropped: int = Field(
        description="How many older turns were dropped before the first turn listed here, to keep the "
        "session under its size limit: the conversation began earlier than it shows. 0 when none were, "
        "or when this read does not reach the session's start."
    )

    @classmethod
    def of(cls, session_id: str, turns: Sequence[ChatTurn]) -> SessionTurns:
        shown = [
            ReadTurn.model_construct(role=turn.role, content=turn.content, timestamp=turn.timestamp)
            for turn in turns
        ]
        dropped = (turns[0].dropped or 0) if turns else 0
        return cls.model_construct(session_id=session_id, turns=shown, turn_count=len(turns), dropped=dropped)


class DeletedSession(BaseModel):
    session_id: str
    deleted: bool = Field(description="False if there was no such session (or it had expired).")


class ListedSession(BaseModel):
    session_id: str = Field(description="Pass it to get_session to read the conversation.")
    title: str | None = Field(
        description="The conversation's first user message, shortened; null when none is known."
    )
    updated_at: int = Field(description="When the session was last saved to, ms since the epoch.")
    updated_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")
    expires_at: int = Field(description="When the session expires unless saved to again, ms since the epoch.")
    expires_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")


class SessionList(BaseModel):
    sessions: list[Annotated[ListedSession, inline_schema(ListedSession)]] = Field(
        description="Most recently saved first."
    )
    next_cursor: str | None = Field(description="Pass it as cursor for the next page; null on the last page.")

    @classmethod
    def of(cls, page: SessionPage) -> SessionList:
        listed = [
            ListedSession(
                session_id=summary.session_id,
                title=summary.title,
                updated_at=summary.updated_at,
                updated_at_iso=iso_utc(summary.updated_at),
                expires_at=summary.expires_at,
                expires_at_iso=iso_utc(summary.expires_at),
            )
            for summary in page.sessions
        ]
        return cls(sessions=listed, next_cursor=page.next_cursor)
