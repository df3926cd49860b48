"""The MCP tools: save_turn, save_turns, get_session, delete_session and list_sessions.

`SessionTools` does what each tool does, over one store, without MCP; `register_tools`
publishes thin wrappers that declare the parameters and call it with the client's store.
"""

# No `from __future__ import annotations`: the tools' parameter types close over
# settings (limits), and the SDK evaluates annotations in the module's globals.

from collections.abc import Sequence
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from memory import (
    ID_PATTERN,
    MAX_BATCH_TURNS,
    MAX_SAFE_INTEGER,
    MAX_SESSION_ID_CHARS,
    RETRY_WINDOW_BYTES,
    SESSION_ID_CONSTRAINTS,
    NewTurn,
    Role,
    SessionStore,
    new_session_id,
)
from server.errors import as_listing_errors, as_tool_errors
from server.isolation import StoreLookup
from server.results import (
    DeletedSession,
    SavedTurn,
    SavedTurns,
    SessionList,
    SessionTurns,
    inline_schema,
)
from server.wording import ttl_words

# The largest page the store lists (memory.index), and a page's size unless asked otherwise.
MOST_PER_PAGE = 100
PAGE_SIZE = 20

SESSION_ID_WORDS = (
    f"An opaque string of 1 to {MAX_SESSION_ID_CHARS} characters with no whitespace, "
    "returned by save_turn when it starts a session, or chosen by the client application."
)
SessionId = Annotated[str, SESSION_ID_CONSTRAINTS, Field(description=SESSION_ID_WORDS)]
SaveId = Annotated[
    str | None,
    Field(
        description="The save's id: repeat the id a previous attempt returned or its error named, and "
        "the save is stored once whatever became of that attempt. You may also choose it (1 to 64 "
        "ASCII letters, digits, '.', '_', ':' or '-', e.g. your application's message id); a new one "
        "for every new save. Omit it and the server makes one.",
        pattern=ID_PATTERN,
    ),
]
OptionalSessionId = Annotated[
    SessionId | None,
    Field(description="The conversation's session id. Omit it to start a new session. " + SESSION_ID_WORDS),
]


class SessionTools:
    """The tools' logic over one store; memory-layer errors become ToolErrors the model reads."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def save_turn(self, turn: NewTurn, session_id: str | None = None) -> SavedTurn:
        """Append one turn; without a session id, to a new session."""
        with as_tool_errors():
            result = await self.store.save_turn(_or_new(session_id), turn)
        return SavedTurn.of(result)

    async def save_turns(
        self, turns: Sequence[NewTurn], session_id: str | None = None, save_id: str | None = None
    ) -> SavedTurns:
        """Append several turns at once, all or none; without a session id, to a new session."""
        with as_tool_errors():
            result = await self.store.save_turns(_or_new(session_id), turns, save_id)
        return SavedTurns.of(result)

    async def get_session(
        self,
        session_id: str,
        last: int | None = None,
        before: int | None = None,
        max_chars: int | None = None,
    ) -> SessionTurns:
        """The session's turns, oldest first: all, or a window of the newest (see SessionStore)."""
        with as_tool_errors():
            turns = await self.store.get_session(session_id, last, before=before, max_chars=max_chars)
        return SessionTurns.of(session_id, turns)

    async def delete_session(self, session_id: str) -> DeletedSession:
        """Forget the session; deleted is False if nothing was stored under the id."""
        with as_tool_errors():
            deleted = await self.store.delete_session(session_id)
        return DeletedSession(session_id=session_id, deleted=deleted)

    async def list_sessions(self, limit: int = PAGE_SIZE, cursor: str | None = None) -> SessionList:
        """The sessions, most recently saved first, `limit` at a time; a refused cursor is -32602."""
        with as_listing_errors():
            page = await self.store.list_sessions(limit, cursor)
        return SessionList.of(page)


def _or_new(session_id: str | None) -> str:
    return new_session_id() if session_id is None else session_id


def register_tools(server: MCPServer, stores: StoreLookup, max_content_chars: int, ttl_seconds: int) -> None:
    """Add the tools to `server`; each call uses the store `stores()` gives for its client."""

    # The wrappers' names are the tools' names, and their parameters the published input schema.
    async def save_turn(
        role: Annotated[Role, Field(description="Who wrote the content: 'user' or 'assistant'.")],
        content: Annotated[
            str, Field(description="The message text, exactly as written.", max_length=max_content_chars)
        ],
        session_id: OptionalSessionId = None,
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
        id: SaveId = None,
    ) -> SavedTurn:
        turn = NewTurn(role=role, content=content, timestamp=timestamp, id=id)
        return await SessionTools(stores()).save_turn(turn, session_id)

    class TurnToSave(BaseModel):
        # Unknown keys are refused here, not by the published schema (see inline_schema).
        model_config = ConfigDict(extra="forbid", strict=True)

        role: Role = Field(description="Who wrote the content: 'user' or 'assistant'.")
        content: str = Field(
            description="The message text, exactly as written.", max_length=max_content_chars
        )
        timestamp: int | None = Field(
            default=None,
            description="When it was written, ms since the Unix epoch. Omit it to use the server's clock.",
            ge=0,
            le=MAX_SAFE_INTEGER,
        )

    async def save_turns(
        turns: Annotated[
            list[Annotated[TurnToSave, inline_schema(TurnToSave)]],
            Field(
                description="The turns to append, oldest first (e.g. the user's message and the reply).",
                min_length=1,
                max_length=MAX_BATCH_TURNS,
            ),
        ],
        session_id: OptionalSessionId = None,
        id: SaveId = None,
    ) -> SavedTurns:
        new_turns = [NewTurn(role=t.role, content=t.content, timestamp=t.timestamp) for t in turns]
        return await SessionTools(stores()).save_turns(new_turns, session_id, id)

    async def get_session(
        session_id: SessionId,
        last: Annotated[
            StrictInt | None, Field(description="Return only the newest N turns. Omit for all.", ge=1)
        ] = None,
        before: Annotated[
            StrictInt | None,
            Field(
                description="Only turns with a timestamp below this (ms since the epoch): pass the first "
                "turn's timestamp of what you have to read further back.",
                ge=0,
                le=MAX_SAFE_INTEGER,
            ),
        ] = None,
        max_chars: Annotated[
            StrictInt | None,
            Field(
                description="Only the newest turns whose contents fit in this many characters together "
                "(none if the newest alone does not).",
                ge=0,
            ),
        ] = None,
    ) -> SessionTurns:
        return await SessionTools(stores()).get_session(session_id, last, before, max_chars)

    async def delete_session(session_id: SessionId) -> DeletedSession:
        return await SessionTools(stores()).delete_session(session_id)

    async def list_sessions(
        limit: Annotated[
            StrictInt,
            Field(description=f"How many sessions to return, 1 to {MOST_PER_PAGE}.", ge=1, le=MOST_PER_PAGE),
        ] = PAGE_SIZE,
        cursor: Annotated[
            str | None,
            Field(description="The next_cursor of the previous page, unchanged. Omit it for the first page."),
        ] = None,
    ) -> SessionList:
        return await SessionTools(stores()).list_sessions(limit, cursor)

    expiry = ttl_words(ttl_seconds)
    server.add_tool(
        save_turn,
        title="Save a conversation turn",
        description=(
            "Append one turn (a user message or an assistant reply) to a conversation's short-term "
            "memory. Call it once per message you want remembered, in the order they happened. "
            "Omit session_id for the first message of a new conversation: a new session is created "
            "and its id returned; keep that id and pass it to every later call for this conversation. "
            f"A session lasts {expiry} after its last save. Every save has an id, returned in the "
            "result and named in the error when the store could not be reached: to retry, repeat the "
            "same call with that id, and the turn is stored once, whatever became of the first "
            "attempt. Saving the same role, content and timestamp again also changes nothing, while "
            f"that turn is among the session's newest {RETRY_WINDOW_BYTES // 1024} KiB. Otherwise "
            "calls are never merged: two equal messages are two turns."
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
            f"call, one store round trip. At most {MAX_BATCH_TURNS} turns. Retries follow "
            "save_turn's rules: repeat the same call with the id the result gave or the error named, "
            "and the turns are stored once. With a timestamp, a turn equal to a saved one (same role, "
            "content and timestamp) among the session's newest "
            f"{RETRY_WINDOW_BYTES // 1024} KiB is not saved again; without one, the server's clock is "
            "used and equal messages are never merged."
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
        list_sessions,
        title="List earlier conversations",
        description=(
            "List the stored conversations (sessions), most recently saved first, each with its "
            "session_id, a title (its first user message, shortened) and when it was last saved. Call "
            "it when the user wants to go back to an earlier conversation but has no session id: show "
            "the titles, then call get_session with the chosen session_id to read it. If next_cursor "
            "is not null there are more: call again with cursor=next_cursor for the next page. "
            f"Expired sessions (no save for {expiry}) are not listed."
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
