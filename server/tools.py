"""The MCP tools: save_turn, save_turns, get_session and delete_session over one open store."""

# No `from __future__ import annotations`: the tools' parameter types close over
# settings (limits), and the SDK evaluates annotations in the module's globals.

from datetime import datetime, timezone
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema

from memory import (
    MAX_BATCH_TURNS,
    MAX_SAFE_INTEGER,
    MAX_SESSION_ID_CHARS,
    ChatTurn,
    NewTurn,
    Role,
    TurnOutcome,
    new_session_id,
)
from server.errors import as_tool_errors
from server.isolation import StoreLookup

SESSION_ID_PATTERN = r"^\S+$"


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


class SavedTurns(BaseModel):
    session_id: str = Field(description="The session the turns were saved in. Pass it to every later call.")
    new_session: bool = Field(description="True when this call created the session.")
    turns: list[TurnOutcome] = Field(
        description="One entry per turn given, in order: its timestamp as stored (repeat it when "
        "retrying) and whether it was stored (false: an equal turn was already saved)."
    )
    expires_at: int = Field(description="When the session expires unless saved to again, ms since the epoch.")
    expires_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")


# The turn schema inlined rather than referenced through $defs: some hosts do not
# resolve $ref, and validating 20 turns through a $ref costs a Python client ~40% more.
_INLINE_TURNS_SCHEMA = WithJsonSchema({"type": "array", "items": ChatTurn.model_json_schema()})


class SessionTurns(BaseModel):
    session_id: str
    turns: Annotated[list[ChatTurn], _INLINE_TURNS_SCHEMA] = Field(
        description="Oldest first. Empty if the session is unknown or expired."
    )
    turn_count: int = Field(description="How many turns are listed here.")


class DeletedSession(BaseModel):
    session_id: str
    deleted: bool = Field(description="False if there was no such session (or it had expired).")


def _ttl_words(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    return f"{days} days" if days and not rest else f"{seconds} seconds"


def register_tools(server: MCPServer, stores: StoreLookup, max_content_chars: int, ttl_seconds: int) -> None:
    """Add the tools to `server`; each call uses the store `stores()` gives for its client."""
    session_id_rule = (
        f"An opaque string of 1 to {MAX_SESSION_ID_CHARS} characters with no whitespace, "
        "returned by save_turn when it starts a session, or chosen by the client application."
    )
    SessionId = Annotated[
        str,
        Field(
            description=session_id_rule,
            min_length=1,
            max_length=MAX_SESSION_ID_CHARS,
            pattern=SESSION_ID_PATTERN,
        ),
    ]

    async def save_turn(
        role: Annotated[Role, Field(description="Who wrote the content: 'user' or 'assistant'.")],
        content: Annotated[
            str, Field(description="The message text, exactly as written.", max_length=max_content_chars)
        ],
        session_id: Annotated[
            SessionId | None,
            Field(
                description="The conversation's session id. Omit it to start a new session. "
                + session_id_rule
            ),
        ] = None,
        # StrictInt: the schema says integer, so "1732540000000" and true are refused, not coerced.
        timestamp: Annotated[
            StrictInt | None,
            Field(
                description="When the message was written, in milliseconds since the Unix epoch. "
                "Omit it to use the server's clock. Pass it (or, when retrying, the timestamp a "
                "previous attempt returned or reported) to make a retry safe.",
                ge=0,
                le=MAX_SAFE_INTEGER,
            ),
        ] = None,
    ) -> SavedTurn:
        with as_tool_errors():
            turn = NewTurn(role=role, content=content, timestamp=timestamp)
            result = await stores().save_turn(new_session_id() if session_id is None else session_id, turn)
        return SavedTurn(
            session_id=result.session_id,
            new_session=result.new_session,
            stored=result.stored,
            timestamp=result.timestamp,
            expires_at=result.expires_at,
            expires_at_iso=_iso(result.expires_at),
        )

    class TurnToSave(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        role: Role = Field(description="Who wrote the content: 'user' or 'assistant'.")
        content: str = Field(
            description="The message text, exactly as written.", max_length=max_content_chars
        )
        timestamp: int | None = Field(
            default=None,
            description="When it was written, ms since the Unix epoch; pass it to make a retry safe.",
            ge=0,
            le=MAX_SAFE_INTEGER,
        )

    async def save_turns(
        turns: Annotated[
            list[TurnToSave],
            Field(
                description="The turns to append, oldest first (e.g. the user's message and the reply).",
                min_length=1,
                max_length=MAX_BATCH_TURNS,
            ),
        ],
        session_id: Annotated[
            SessionId | None,
            Field(
                description="The conversation's session id. Omit it to start a new session. "
                + session_id_rule
            ),
        ] = None,
    ) -> SavedTurns:
        with as_tool_errors():
            new_turns = [NewTurn(role=t.role, content=t.content, timestamp=t.timestamp) for t in turns]
            result = await stores().save_turns(
                new_session_id() if session_id is None else session_id, new_turns
            )
        return SavedTurns(
            session_id=result.session_id,
            new_session=result.new_session,
            turns=result.turns,
            expires_at=result.expires_at,
            expires_at_iso=_iso(result.expires_at),
        )

    async def get_session(
        session_id: SessionId,
        last: Annotated[
            StrictInt | None, Field(description="Return only the newest N turns. Omit for all.", ge=1)
        ] = None,
    ) -> SessionTurns:
        with as_tool_errors():
            turns = await stores().get_session(session_id, last)
        return SessionTurns(session_id=session_id, turns=turns, turn_count=len(turns))

    async def delete_session(session_id: SessionId) -> DeletedSession:
        with as_tool_errors():
            deleted = await stores().delete_session(session_id)
        return DeletedSession(session_id=session_id, deleted=deleted)

    expiry = _ttl_words(ttl_seconds)
    server.add_tool(
        save_turn,
        title="Save a conversation turn",
        description=(
            "Append one turn (a user message or an assistant reply) to a conversation's short-term "
            "memory. Call it once per message you want remembered, in the order they happened. "
            "Omit session_id for the first message of a new conversation: a new session is created "
            "and its id returned; keep that id and pass it to every later call for this conversation. "
            f"A session lasts {expiry} after its last save. A retry is recognised only by its "
            "timestamp: saving the same role, content and timestamp again changes nothing, so to "
            "retry a failed call, pass the timestamp it returned or its error reported. Calls "
            "without a timestamp are never merged: two equal messages are two turns."
        ),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    server.add_tool(
        save_turns,
        title="Save several conversation turns at once",
        description=(
            "Append several turns to a conversation's session at once, in order, atomically: all are "
            "saved or none is. Omit session_id to start a new session. Use it for an exchange (the "
            "user's message and your reply) instead of two save_turn calls: one "
            f"call, one store round trip. At most {MAX_BATCH_TURNS} turns. Each turn follows "
            "save_turn's rules: with a timestamp, a turn equal to a saved one (same role, content "
            "and timestamp) is a retry and is not saved again; without one, the server's clock is "
            "used and equal messages are never merged. The result gives each turn's timestamp: "
            "repeat those when retrying."
        ),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        ),
    )
    server.add_tool(
        get_session,
        title="Read a conversation's memory",
        description=(
            "Read the remembered turns of a conversation, oldest first. Call it when a conversation "
            "resumes, or whenever you need what was said earlier, with the session id you got from "
            "save_turn or from the client application. Pass last=N for only the newest N turns. An "
            "unknown or expired session gives an empty list, not an error. Reading does not extend "
            "the session's life."
        ),
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    server.add_tool(
        delete_session,
        title="Forget a conversation",
        description=(
            "Permanently delete every turn of a conversation's session, given its session id. Call "
            "it only when the user asks to forget or reset the conversation; it cannot be undone. "
            "deleted is false if nothing was stored under that id."
        ),
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
