"""Prompts: resume a stored conversation, and how to remember one with this server's tools."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Message, Prompt, UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from pydantic import Field

from memory import ChatTurn, check_session_id
from server.errors import as_protocol_errors
from server.isolation import StoreLookup
from server.settings import Capture
from server.wording import ttl_words

RESUME_PROMPT = "resume_conversation"
GUIDE_PROMPT = "remember_conversation"

_MOST_DIGITS = 18
_WHOLE_NUMBER = re.compile(r"[0-9]+")

# Prompt arguments travel as strings and host UIs show these descriptions next to the fields.
SessionIdArgument = Annotated[
    str,
    Field(description="The stored conversation's session id (as returned by save_turn)."),
]
LastArgument = Annotated[
    str | None,
    Field(description="Only the newest N turns, a whole number of 1 or more. Leave empty for all."),
]
BeforeArgument = Annotated[
    str | None,
    Field(description="Only turns before this time (ms since the epoch), to go further back. Leave empty."),
]
MaxCharsArgument = Annotated[
    str | None,
    Field(description="Only the newest turns that fit in this many characters. Leave empty for no limit."),
]
OptionalSessionIdArgument = Annotated[
    str | None,
    Field(description="The conversation's session id, if it has one already. Leave empty to start one."),
]


class StrictPrompt(Prompt):
    """A prompt that answers a missing, unknown or non-string argument with invalid params (-32602).

    The SDK would answer those with a bare "Internal server error" and log a traceback.
    """

    async def render(self, arguments: dict[str, Any] | None, context: Any) -> Any:
        given = arguments or {}
        names = [argument.name for argument in self.arguments or []]
        missing = [a.name for a in self.arguments or [] if a.required and a.name not in given]
        if missing:
            raise invalid_argument(f"missing required argument {', '.join(missing)}")
        unknown = sorted(set(given) - set(names))
        if unknown:
            accepted = ", ".join(names)
            raise invalid_argument(f"unknown argument {', '.join(unknown)}; {self.name} takes {accepted}")
        not_text = sorted(name for name, value in given.items() if not isinstance(value, str))
        if not_text:
            raise invalid_argument(f"prompt arguments are strings; {', '.join(not_text)} is not")
        return await super().render(arguments, context)


def unknown_prompt(name: str, known: Sequence[str]) -> MCPError:
    return MCPError(
        code=INVALID_PARAMS,
        message=f"Unknown prompt: {name!r}; the prompts are {', '.join(known)}",
        data={"name": name},
    )


def invalid_argument(detail: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=f"Invalid argument: {detail}")


def parse_last(text: str | None) -> int | None:
    """`last` from its string form: a whole number of 1 or more; empty or absent means all turns."""
    if text is None or not text.strip():
        return None
    digits = text.strip().lstrip("0")
    if not _WHOLE_NUMBER.fullmatch(text.strip()) or not digits:
        raise invalid_argument(
            f"last must be a whole number of 1 or more (got {text[:40]!r}); leave it empty for all turns"
        )
    # More turns than any session holds means all of them, as for get_session; int() of a few
    # thousand digits would raise instead.
    return int(digits) if len(digits) <= _MOST_DIGITS else 10**_MOST_DIGITS


def parse_count(name: str, text: str | None) -> int | None:
    """A whole number argument of 0 or more (`before`, `max_chars`); empty or absent means none."""
    if text is None or not text.strip():
        return None
    if not _WHOLE_NUMBER.fullmatch(text.strip()) or len(text.strip()) > _MOST_DIGITS:
        raise invalid_argument(
            f"{name} must be a whole number of 0 or more (got {text[:40]!r}); or leave it empty"
        )
    return int(text.strip())


def optional_session_id(text: str | None) -> str | None:
    """An optional session id argument: empty or absent means none; anything else must be valid."""
    if text is None or not text.strip():
        return None
    with as_protocol_errors():
        return check_session_id(text)


def resume_messages(
    session_id: str, turns: Sequence[ChatTurn], ttl_seconds: int, windowed: bool = False
) -> list[Message]:
    """Each stored turn as a prompt message with its own role, oldest first.

    A prompt needs at least one message to be sent, so an empty session gives one user
    message that says nothing is stored, rather than an error the user cannot act on.
    """
    if not turns and windowed:
        return [
            UserMessage(
                f"I wanted to resume the conversation stored under session id {session_id!r}, but none "
                "of its stored turns falls within the window asked for (before, max_chars). Let's "
                "carry on from here."
            )
        ]
    if not turns:
        return [
            UserMessage(
                f"I wanted to resume the conversation stored under session id {session_id!r}, but no "
                "turns are stored under it: it was never saved, or it expired "
                f"{ttl_words(ttl_seconds)} after its last save. Let's start afresh."
            )
        ]
    messages = [Message(turn.content, role=turn.role) for turn in turns]
    if turns[0].dropped:
        # Said first, so that the model knows the conversation began before what follows.
        note = (
            f"(The {turns[0].dropped} oldest turns of this conversation were dropped to keep it under "
            "its size limit; it continues from here.)"
        )
        messages.insert(0, UserMessage(note))
    return messages


def memory_guide(ttl_seconds: int, session_id: str | None = None, capture: Capture = "model") -> str:
    """Instructions for the model: how to remember a conversation with this server's tools, or,
    when the host's hooks save it (`capture` "hooks"), how to read it back."""
    if capture == "hooks":
        return _reading_guide(ttl_seconds, session_id)
    if session_id is None:
        start = (
            "- Your first save_turn without a session_id starts a new session and returns its "
            "session_id. Keep that id and pass it as session_id to every later call for this "
            "conversation. Tell the user the id if they may want to resume later."
        )
    else:
        start = (
            f"- This conversation's session id is {session_id!r}. First call get_session with it to "
            "read what was said before, then pass it as session_id to every save_turn."
        )
    points = [
        start,
        "- Save every message as soon as it is written, the user's and yours, in order: save_turn "
        "with role 'user' or 'assistant' and the content exactly as written.",
        "- Every save has an id: the result gives it, and so does the error when the store could not "
        "be reached. If a call fails that way, repeat the same call with that id: the turn is stored "
        "once (stored: false if the first attempt had saved it). A repeat without the id is a new "
        "message, saved again.",
        "- To save an exchange (the user's message and your reply) in one call, use save_turns with "
        "both turns, oldest first: they are stored together or not at all.",
        _RECALL,
        _expiry(ttl_seconds),
        _FORGET,
    ]
    return "Remember this conversation with the session-memory tools:\n" + "\n".join(points)


_RECALL = (
    "- To recall earlier turns, call get_session with the session id (last=N for only the "
    "newest N). An unknown or expired session reads as empty."
)
_FORGET = "- Call delete_session only when the user asks to forget the conversation: it cannot be undone."


def _expiry(ttl_seconds: int) -> str:
    return f"- A session expires {ttl_words(ttl_seconds)} after its last save; reading does not extend it."


def _reading_guide(ttl_seconds: int, session_id: str | None) -> str:
    if session_id is None:
        find = (
            "- To find a conversation's session id, call list_sessions: the most recently saved "
            "first, each titled with its first user message."
        )
    else:
        find = (
            f"- This conversation's session id is {session_id!r}: call get_session with it to read "
            "what was said before."
        )
    points = [
        "- The host saves every message of this conversation, the user's and yours, as it is written. "
        "Do not call save_turn or save_turns for them: each would be stored twice.",
        find,
        _RECALL,
        _expiry(ttl_seconds),
        _FORGET,
    ]
    return "This conversation is remembered by the session-memory server:\n" + "\n".join(points)


def register_prompts(
    server: MCPServer, stores: StoreLookup, ttl_seconds: int, capture: Capture = "model"
) -> None:
    """Add the two prompts to `server`; each read uses the store `stores()` gives."""

    async def resume_conversation(
        session_id: SessionIdArgument,
        last: LastArgument = None,
        before: BeforeArgument = None,
        max_chars: MaxCharsArgument = None,
    ) -> list[Message]:
        count = parse_last(last)
        window = {"before": parse_count("before", before), "max_chars": parse_count("max_chars", max_chars)}
        with as_protocol_errors():
            turns = await stores().get_session(session_id, count, **window)
        return resume_messages(
            session_id, turns, ttl_seconds, windowed=any(v is not None for v in window.values())
        )

    async def remember_conversation(session_id: OptionalSessionIdArgument = None) -> str:
        return memory_guide(ttl_seconds, optional_session_id(session_id), capture)

    server.add_prompt(
        StrictPrompt.from_function(
            resume_conversation,
            name=RESUME_PROMPT,
            title="Resume a stored conversation",
            description=(
                "Continue a conversation saved in session memory: its stored turns become the "
                "conversation's messages, each with its own role, oldest first."
            ),
        )
    )
    server.add_prompt(
        StrictPrompt.from_function(
            remember_conversation,
            name=GUIDE_PROMPT,
            title="Remember this conversation",
            description=(
                "Tell the model how to save this conversation with the session-memory tools and read "
                "it back later."
            ),
        )
    )
