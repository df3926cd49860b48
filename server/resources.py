"""A stored conversation as MCP resources: `session://{id}` as JSON, `.../markdown` as a transcript."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources import ResourceSecurity
from mcp.shared.uri_template import UriTemplate

from memory import ChatTurn, SessionStore
from server.errors import as_protocol_errors
from server.isolation import StoreLookup
from server.results import SessionTurns

JSON_TEMPLATE = "session://{session_id}"
MARKDOWN_TEMPLATE = "session://{session_id}/markdown"

# The SDK's default policy rejects values that look like file paths ("..", "/x", "C:\\");
# a session id is an opaque key, never a path, and `check_session_id` judges it instead.
_ID_IS_NOT_A_PATH = ResourceSecurity(exempt_params=frozenset({"session_id"}))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ENCODING_NOTE = (
    "The session id is percent-encoded in the URI like any RFC 6570 {session_id} value: every "
    "character but letters, digits and -._~ (so user:42/chat#1 is session://user%3A42%2Fchat%231)."
)


def session_uri(session_id: str) -> str:
    """The JSON resource's URI for a session id, percent-encoded as the template expects."""
    return UriTemplate.parse(JSON_TEMPLATE).expand({"session_id": session_id})


def markdown_uri(session_id: str) -> str:
    """The Markdown transcript's URI for a session id."""
    return UriTemplate.parse(MARKDOWN_TEMPLATE).expand({"session_id": session_id})


async def read_turns(store: SessionStore, session_id: str) -> list[ChatTurn]:
    """The session's turns, oldest first; memory-layer errors become JSON-RPC errors."""
    with as_protocol_errors():
        return await store.get_session(session_id)


def session_json(session_id: str, turns: Sequence[ChatTurn]) -> str:
    """The same object get_session returns: {session_id, turns, turn_count}, compact."""
    return SessionTurns.of(session_id, turns).model_dump_json()


def session_markdown(session_id: str, turns: Sequence[ChatTurn]) -> str:
    """A transcript: a heading per turn (number, role, UTC time), its content quoted below."""
    lines = [f"# Conversation {inline_code(session_id)}", ""]
    if not turns:
        lines.append("No turns are stored under this session id (it is unknown or has expired).")
    else:
        lines.append(f"{len(turns)} turn{'s' if len(turns) != 1 else ''}, oldest first. Times are UTC.")
    for number, turn in enumerate(turns, start=1):
        lines += ["", f"## {number}. {turn.role}, {utc_time(turn.timestamp)}", ""]
        # Quoting every line keeps a turn's own Markdown (headings included) inside its
        # block, so a message cannot pass itself off as another turn.
        lines += [f"> {line}" if line else ">" for line in turn.content.split("\n")]
    return "\n".join(lines) + "\n"


def utc_time(timestamp_ms: int) -> str:
    """`2026-11-25 17:51:07.123 UTC`; past year 9999 (still a valid timestamp) the raw number."""
    try:
        moment = _EPOCH + timedelta(milliseconds=timestamp_ms)
    except OverflowError:
        return f"{timestamp_ms} ms since the epoch"
    return f"{moment:%Y-%m-%d %H:%M:%S}.{timestamp_ms % 1000:03d} UTC"


def inline_code(text: str) -> str:
    """`text` as Markdown inline code, fenced by more backticks than any run of them inside."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def register_resources(server: MCPServer, stores: StoreLookup) -> None:
    """Add the two resource templates to `server`; each read uses the store `stores()` gives."""

    async def session(session_id: str) -> str:
        return session_json(session_id, await read_turns(stores(), session_id))

    async def session_transcript(session_id: str) -> str:
        return session_markdown(session_id, await read_turns(stores(), session_id))

    server.resource(
        JSON_TEMPLATE,
        name="session",
        title="Stored conversation (JSON)",
        description=(
            "A stored conversation's turns, oldest first, as JSON: {session_id, turns: [{role, "
            "content, timestamp}], turn_count}. An unknown or expired session has no turns. " + _ENCODING_NOTE
        ),
        mime_type="application/json",
        security=_ID_IS_NOT_A_PATH,
    )(session)
    server.resource(
        MARKDOWN_TEMPLATE,
        name="session_transcript",
        title="Stored conversation (Markdown)",
        description=(
            "A stored conversation as a readable Markdown transcript: one block per turn with its "
            "role and UTC time, oldest first. " + _ENCODING_NOTE
        ),
        mime_type="text/markdown",
        security=_ID_IS_NOT_A_PATH,
    )(session_transcript)
