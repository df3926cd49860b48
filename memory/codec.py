"""The stored form of a session: a JSON array of turns, written as `JSON.stringify` writes it
and read as the design note's TypeScript layer reads it (`JSON.parse`)."""

from __future__ import annotations

import json
import re
from typing import Any

from memory.errors import CorruptSessionError
from memory.models import MAX_SAFE_INTEGER, ChatTurn, NewTurn

_TURN_KEYS = frozenset({"role", "content", "timestamp"})
_ROLES = frozenset({"user", "assistant"})
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Where an element of the array may start: '{' after ',' or '[', before a key's quote. Inside
# a string every quote is escaped, so JSON quoted in a message does not look like a start.
_ELEMENT_START = re.compile(r'[,\[][ \t\n\r]*(\{)[ \t\n\r]*"')
# A tail window whose first candidates all fail is read whole instead.
_TAIL_ATTEMPTS = 32


def turn_prefix(turn: ChatTurn | NewTurn) -> str:
    """A turn's JSON up to its timestamp's digits: `{"role":"user","content":"…","timestamp":`."""
    fields = {"role": turn.role, "content": turn.content}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"timestamp":'


def encode_turn(turn: ChatTurn) -> str:
    """Serialise a turn exactly as JavaScript's JSON.stringify would.

    Same key order, no spaces, non-ASCII kept as is, control characters as
    `\\n` or `\\u00XX`: equal turns give equal text, which the append script
    relies on to recognise a retried save.
    """
    return f"{turn_prefix(turn)}{turn.timestamp}}}"


def encode_session(turns: list[ChatTurn]) -> str:
    """Serialise a whole session the way the design note's layer does."""
    return "[" + ",".join(encode_turn(turn) for turn in turns) + "]"


def decode_session(value: str | bytes, session_id: str) -> list[ChatTurn]:
    """Read a stored value as `JSON.parse` would, or raise CorruptSessionError saying where it fails.

    Like the TypeScript layer: bytes that are not UTF-8 become U+FFFD (TextDecoder), a
    repeated key keeps its last value, an integral number such as `1e3` is an integer, and
    a lone surrogate escape (`"\\ud800"`, which JSON.stringify writes for a broken emoji)
    reads as U+FFFD.
    """
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        parsed = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise _corrupt(session_id, f"not valid JSON at character {exc.pos}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise _corrupt(session_id, f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(parsed, list):
        raise _corrupt(session_id, f"a JSON {_json_type(parsed)}, not an array")
    return [_turn(item, index, session_id) for index, item in enumerate(parsed)]


def decode_tail(text: str, session_id: str) -> list[ChatTurn] | None:
    """The complete turns at the end of a window cut from the end of a stored value.

    None when no element start in the window gives a valid rest of the array (the
    value may be corrupt, or not an array at all): the caller then reads it whole.
    """
    for attempt, match in enumerate(_ELEMENT_START.finditer(text)):
        if attempt == _TAIL_ATTEMPTS:
            return None
        try:
            return decode_session("[" + text[match.start(1) :], session_id)
        except CorruptSessionError:
            continue
    return None


def _turn(item: object, index: int, session_id: str) -> ChatTurn:
    where = f"turn {index}"
    if not isinstance(item, dict):
        raise _corrupt(session_id, f"{where} is a JSON {_json_type(item)}, not an object")
    if item.keys() != _TURN_KEYS:
        extra = sorted(item.keys() - _TURN_KEYS)
        missing = sorted(_TURN_KEYS - item.keys())
        problem = f"has unexpected keys {extra}" if extra else f"lacks {missing}"
        raise _corrupt(session_id, f"{where} {problem}")
    role, content, timestamp = item["role"], item["content"], item["timestamp"]
    if role not in _ROLES:
        raise _corrupt(session_id, f"{where} has role {role!r}; it must be 'user' or 'assistant'")
    if not isinstance(content, str):
        raise _corrupt(session_id, f"{where} has content that is a JSON {_json_type(content)}, not a string")
    if not _is_timestamp(timestamp):
        raise _corrupt(
            session_id, f"{where} has timestamp {timestamp!r}; it must be an integer from 0 to 2^53-1"
        )
    if not content.isascii():
        content = _LONE_SURROGATE.sub("\ufffd", content)
    return ChatTurn.model_construct(role=role, content=content, timestamp=int(timestamp))


def _is_timestamp(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not value.is_integer():
        return False
    return 0 <= value <= MAX_SAFE_INTEGER


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _corrupt(session_id: str, problem: str) -> CorruptSessionError:
    return CorruptSessionError(
        f"the value stored for session {session_id!r} is not a JSON array of turns: {problem}; "
        "it was left unchanged"
    )
