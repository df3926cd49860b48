"""The MCP tools: save_turn, get_session and delete_session over one open store."""

# No `from __future__ import annotations`: the tools' parameter types close over
# settings (limits), and the SDK evaluates annotations in the module's globals.

from datetime import datetime, timezone
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, StrictInt, WithJsonSchema

from memory import (
    MAX_SAFE_INTEGER,
    MAX_SESSION_ID_CHARS,
    ChatTurn,
    Role,
    SessionStore,
    new_session_id,
    now_ms,
)
from server.errors import as_tool_errors

SESSION_ID_PATTERN = r"^\S+$"


class SavedTurn(BaseModel):
    session_id: str = Field(description="The session the turn was saved in. Pass it to every later call.")
    new_session: bool = Field(description="True when this call started the session.")
    stored: bool = Field(
        description="False when this exact turn was already saved (a retry); nothing changed."
    )
    turn_count: int | None = Field(description="Turns now in the session.")
    expires_at: int = Field(description="When the session expires unless saved to again, ms since the epoch.")
    expires_at_iso: str = Field(description="The same moment in ISO 8601 (UTC).")


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


def register_tools(server: MCPServer, store: SessionStore, max_content_chars: int, ttl_seconds: int) -> None:
    """Add the three tools to `server`, with limits and expiry taken from the settings."""
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
                "Omit it to use the server's clock.",
                ge=0,
                le=MAX_SAFE_INTEGER,
            ),
        ] = None,
    ) -> SavedTurn:
        turn = ChatTurn(role=role, content=content, timestamp=now_ms() if timestamp is None else timestamp)
        is_new = session_id is None
        with as_tool_errors():
            result = await store.save_turn(new_session_id() if session_id is None else session_id, turn)
        return SavedTurn(
            session_id=result.session_id,
            new_session=is_new,
            stored=result.stored,
            turn_count=result.turn_count,
            expires_at=result.expires_at,
            expires_at_iso=datetime.fromtimestamp(result.expires_at / 1000, timezone.utc).isoformat(
                timespec="seconds"
            ),
        )

    async def get_session(
        session_id: SessionId,
        last: Annotated[
            StrictInt | None, Field(description="Return only the newest N turns. Omit for all.", ge=1)
        ] = None,
    ) -> SessionTurns:
        with as_tool_errors():
            turns = await store.get_session(session_id, last)
        return SessionTurns(session_id=session_id, turns=turns, turn_count=len(turns))

    async def delete_session(session_id: SessionId) -> DeletedSession:
        with as_tool_errors():
            deleted = await store.delete_session(session_id)
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
            f"A session lasts {expiry} after its last save. Saving the exact same turn again (same "
            "role, content and timestamp) changes nothing, so retrying a failed call is safe."
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
