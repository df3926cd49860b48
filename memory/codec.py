"""The stored form of a session: a compact JSON array of turns, as `JSON.stringify` writes it."""

from __future__ import annotations

import json

from pydantic import TypeAdapter, ValidationError

from memory.errors import CorruptSessionError
from memory.models import ChatTurn

_SESSION = TypeAdapter(list[ChatTurn])


def encode_turn(turn: ChatTurn) -> str:
    """Serialise a turn exactly as JavaScript's JSON.stringify would.

    Same key order, no spaces, non-ASCII kept as is, control characters as
    `\\n` or `\\u00XX`: equal turns give equal text, which the append script
    relies on to recognise a retried save.
    """
    fields = {"role": turn.role, "content": turn.content, "timestamp": turn.timestamp}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def encode_session(turns: list[ChatTurn]) -> str:
    """Serialise a whole session the way the design note's layer does."""
    return "[" + ",".join(encode_turn(turn) for turn in turns) + "]"


def decode_session(value: str | bytes, session_id: str) -> list[ChatTurn]:
    """Parse a stored value, or raise CorruptSessionError naming the first problem."""
    try:
        return _SESSION.validate_json(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the value"
        raise CorruptSessionError(
            f"the value stored for session {session_id!r} is not a JSON array of turns "
            f"({where}: {first['msg']}); it was left unchanged"
        ) from exc
