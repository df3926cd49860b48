"""Stored session values for differential tests: an independent reader (the oracle) and
generators of the layouts other writers produce, valid and broken."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

ROLES = ("user", "assistant")
MAX_SAFE_INTEGER = 2**53 - 1
WHITESPACE = " \t\n\r"
Turn = tuple[str, str, int]  # (role, content, timestamp)
StoredTurn = tuple[str, str, int, str | None]  # and the id of the save that stored it, if any

# Characters that stress a JSON scanner: quotes, backslashes, brackets, controls, separators
# that are legal in JSON strings but not in JavaScript source, non-BMP text, lone surrogates.
_SAVABLE = list('"\\/{}[],: \n\t\r\x00\x01\x1f\x7f\u2028\u2029é€😀')
_SURROGATES = ["\ud800", "\udc00", "\udbff"]
_ANY_CHARACTER = st.characters(codec="utf-8")
CONTENT = st.text(st.one_of(st.sampled_from([*_SAVABLE, *_SURROGATES]), _ANY_CHARACTER), max_size=24)
NEW_CONTENT = st.text(st.one_of(st.sampled_from(_SAVABLE), _ANY_CHARACTER), max_size=24)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def oracle(value: str) -> list[StoredTurn] | None:
    """What the TypeScript layer reads (JSON.parse, then the turn schema), or None if it is no session.

    Written apart from the memory layer's reader, so that the two can disagree.
    """

    def refuse(name: str) -> Any:
        raise ValueError(name)

    try:
        parsed = json.loads(value, parse_constant=refuse)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, list):
        return None
    turns = []
    for item in parsed:
        if not isinstance(item, dict) or set(item) - {"id"} != {"role", "content", "timestamp"}:
            return None
        if not isinstance(item.get("id"), (str, type(None))):  # the id of the save that stored it
            return None
        role, content, timestamp = item["role"], item["content"], item["timestamp"]
        if role not in ROLES or not isinstance(content, str):
            return None
        if type(timestamp) not in (int, float) or not math.isfinite(timestamp):
            return None
        if timestamp != math.floor(timestamp) or not 0 <= timestamp <= MAX_SAFE_INTEGER:
            return None
        turn_id = item.get("id")
        if turn_id is not None:
            turn_id = _LONE_SURROGATE.sub("\ufffd", turn_id)
        turns.append((role, _LONE_SURROGATE.sub("\ufffd", content), int(timestamp), turn_id))
    return turns


def stringify(turn: Turn, turn_id: str | None = None) -> str:
    """JSON.stringify({role, content, timestamp, id}): the layout equal turns are found in."""
    role, content, timestamp = turn
    fields: dict[str, Any] = {"role": role, "content": content, "timestamp": timestamp}
    if turn_id is not None:
        fields["id"] = turn_id
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Layout:
    spaced: bool
    reordered: bool
    repeated_keys: bool
    escapes: str  # 'stringify', 'some' or 'all'
    number_forms: bool


def _escape_string(text: str, layout: Layout, rnd: random.Random) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        heavy = layout.escapes == "all" or (layout.escapes == "some" and rnd.random() < 0.3)
        if 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}" if rnd.random() < 0.5 else f"\\u{code:04X}")
        elif code > 0xFFFF:
            if heavy:
                high, low = divmod(code - 0x10000, 0x400)
                out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
            else:
                out.append(char)
        elif heavy:
            out.append(f"\\u{code:04x}")
        elif char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20:
            short = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
            out.append(short or f"\\u{code:04x}")
        elif char == "/" and layout.escapes == "some":
            out.append("\\/")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _number(timestamp: int, layout: Layout, rnd: random.Random) -> str:
    if not layout.number_forms:
        return str(timestamp)
    forms = [str(timestamp), f"{timestamp}.0", f"{timestamp}e0", f"{timestamp}E+0", f"{timestamp}.000"]
    if timestamp and timestamp % 1000 == 0:
        forms.append(f"{timestamp // 1000}e3")
    return rnd.choice(forms)


def _junk_value(rnd: random.Random) -> str:
    return rnd.choice(
        ["null", "true", "false", "1.5", "-2", '"x"', '{"a":[1,{"b":null}]}', "[]", '"\\u0072ole"']
    )


def serialise(turns: list[dict[str, Any]], layout: Layout, rnd: random.Random) -> str:
    """A JSON array of turn-like objects in `layout`; values are written as given."""

    def ws() -> str:
        return rnd.choice(["", " ", "\n  ", "\t", "\r\n"]) if layout.spaced else ""

    elements = []
    for fields in turns:
        members = []
        items = list(fields.items())
        if layout.reordered:
            rnd.shuffle(items)
        for name, value in items:
            if layout.repeated_keys and rnd.random() < 0.3:
                members.append((name, _junk_value(rnd)))
            if isinstance(value, str):
                text = _escape_string(value, layout, rnd)
            elif isinstance(value, int) and not isinstance(value, bool):
                text = _number(value, layout, rnd)
            else:
                text = json.dumps(value)
            members.append((name, text))
        key = (lambda name: _escape_string(name, layout, rnd)) if layout.escapes == "all" else json.dumps
        body = f"{ws()},{ws()}".join(f"{key(name)}{ws()}:{ws()}{text}" for name, text in members)
        elements.append(f"{{{ws()}{body}{ws()}}}")
    return f"{ws()}[{ws()}" + f"{ws()},{ws()}".join(elements) + f"{ws()}]{ws()}"


_BAD_FIELDS: list[tuple[str, Any]] = [
    ("role", "robot"),
    ("role", 1),
    ("content", 7),
    ("content", None),
    ("timestamp", -1),
    ("timestamp", 1.5),
    ("timestamp", "1"),
    ("timestamp", MAX_SAFE_INTEGER + 1),
    ("timestamp", True),
    ("extra", 1),
    ("id", 5),
    ("id", False),
    ("id", ["x"]),
]


@st.composite
def stored_values(draw: st.DrawFn) -> str:
    """A value another writer could have left at a session key: usually a session, sometimes not."""
    rnd = draw(st.randoms(use_true_random=False))
    turns: list[dict[str, Any]] = [
        {"role": draw(st.sampled_from(ROLES)), "content": draw(CONTENT), "timestamp": draw(_TIMESTAMPS)}
        for _ in range(draw(st.integers(0, 6)))
    ]
    for fields in turns:  # turns this server stored carry their save's id; a few writers' null
        if draw(st.integers(0, 2)) == 0:
            fields["id"] = draw(st.one_of(_IDS, CONTENT, st.none()))
    if turns and draw(st.integers(0, 9)) == 0:  # a turn that JSON.parse reads but the schema refuses
        bad = rnd.choice(turns)
        name, value = rnd.choice(_BAD_FIELDS)
        bad[name] = value
    if turns and draw(st.integers(0, 19)) == 0:
        del rnd.choice(turns)[rnd.choice(["role", "content", "timestamp"])]
    layout = Layout(
        spaced=draw(st.booleans()),
        reordered=draw(st.booleans()),
        repeated_keys=draw(st.booleans()),
        escapes=draw(st.sampled_from(["stringify", "stringify", "some", "all"])),
        number_forms=draw(st.booleans()),
    )
    value = serialise(turns, layout, rnd)
    if draw(st.integers(0, 3)) == 0:
        value = _mutate(value, rnd)
    return value


_IDS = st.from_regex(r"[A-Za-z0-9._:-]{1,64}(#[0-9]{1,3})?", fullmatch=True)
_TIMESTAMPS = st.one_of(
    st.integers(0, 2_000_000_000_000), st.sampled_from([0, 1, 1_732_540_000_000, MAX_SAFE_INTEGER])
)


def _mutate(value: str, rnd: random.Random) -> str:
    """One random edit: a deleted, inserted or replaced character, or a cut."""
    if not value:
        return rnd.choice(['"', "[", "]"])
    at = rnd.randrange(len(value))
    kind = rnd.choice(["delete", "insert", "replace", "cut"])
    char = rnd.choice(list('"\\{}[],: \x01a0-'))
    if kind == "delete":
        return value[:at] + value[at + 1 :]
    if kind == "insert":
        return value[:at] + char + value[at:]
    if kind == "replace":
        return value[:at] + char + value[at + 1 :]
    return value[:at]
