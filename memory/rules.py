"""What every backend obeys: session ids and keys, the clock, the stored JSON layout, the limits
and the planning of a save. `memory.base_store.BaseStore` applies them before a backend's own
work, once."""

from __future__ import annotations

import functools
import json
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import StringConstraints, TypeAdapter, ValidationError

from memory.config import StoreConfig
from memory.errors import (
    CorruptSessionError,
    InvalidRequestError,
    InvalidSessionIdError,
    SessionFullError,
    TurnTooLargeError,
    corrupt,
)
from memory.index import (
    session_title,
)
from memory.models import (
    ID_PATTERN,
    ID_RULE,
    MAX_ID_CHARS,
    MAX_SAFE_INTEGER,
    TURN_ID_PATTERN,
    ChatTurn,
    NewTurn,
    Role,
)

# -- session ids and keys ------------------------------------------------------------------------

MAX_SESSION_ID_CHARS = 128
# The rule as a JSON Schema states it (the server publishes these constraints in its schemas):
# 1 to MAX_SESSION_ID_CHARS characters, none of them whitespace. JSON Schema has no portable
# way to name Unicode categories, so the unprintable ones below are refused by
# check_session_id alone; the schema never refuses an id that the check accepts.
SESSION_ID_PATTERN = r"^\S+$"
SESSION_ID_CONSTRAINTS = StringConstraints(
    min_length=1, max_length=MAX_SESSION_ID_CHARS, pattern=SESSION_ID_PATTERN
)
SESSION_ID_RULE = (
    f"a session id is 1 to {MAX_SESSION_ID_CHARS} printable characters "
    "with no whitespace (letters, digits, punctuation and symbols)"
)

# Control, format (zero-width), surrogate, private-use and unassigned code points:
# invisible or ambiguous in logs and keys.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def new_session_id() -> str:
    """A fresh opaque id: 128 random bits, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(16)


def check_session_id(session_id: str) -> str:
    """Return the id unchanged, or raise InvalidSessionIdError saying what is wrong."""
    if not session_id:
        raise InvalidSessionIdError(f"the session id is empty; {SESSION_ID_RULE}")
    if len(session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidSessionIdError(f"the session id is {len(session_id)} characters long; {SESSION_ID_RULE}")
    for position, char in enumerate(session_id):
        if char.isspace() or unicodedata.category(char) in _UNPRINTABLE_CATEGORIES:
            raise InvalidSessionIdError(
                f"the session id has a whitespace or unprintable character (U+{ord(char):04X}) "
                f"at position {position}; {SESSION_ID_RULE}"
            )
    return session_id


def session_key(key_prefix: str, session_id: str) -> str:
    """The key the design note uses, `session:{id}`, behind an optional prefix."""
    return f"{key_prefix}session:{session_id}"


def deletion_marker_key(key: str) -> str:
    """Where a delete of `key` leaves its time for a while, so that a save that began before the
    delete and arrives after it does not create the session again.

    On a Redis Cluster a script may only touch keys of one hash slot, and the slot of a key is
    that of its hash tag (what lies between its first '{' and the next '}') or else of the whole
    key. The marker repeats the key's tag, or makes the whole key its tag, so that it shares the
    key's slot. Only a key with no tag but a '}' cannot be made a tag; its marker lies elsewhere.
    """
    if _hash_tag(key) is not None:
        return f"{key}:deleted"
    return f"{{{key}}}:deleted"


def shares_hash_slot(key: str, other: str) -> bool:
    """Whether a Redis Cluster keeps the two keys in one hash slot: they have the same hash tag,
    or are the same key. (Keys of different text may share a slot by chance; that is not relied on.)"""
    return (_hash_tag(key) or key) == (_hash_tag(other) or other)


def _hash_tag(key: str) -> str | None:
    opening = key.find("{")
    if opening < 0:
        return None
    closing = key.find("}", opening + 1)
    if closing <= opening + 1:
        return None
    return key[opening + 1 : closing]


# How long a delete's marker is kept: longer than a save can be under way (its deadline and
# retries, a request held in a proxy or a paused server), short enough to cost nothing.
DELETION_MARKER_SECONDS = 3600


def new_save_id() -> str:
    """A save's id when the caller gives none: 72 random bits, URL-safe base64 (12 characters),
    enough that no two saves within a session's retry window ever share one."""
    return secrets.token_urlsafe(9)


# -- the clock -----------------------------------------------------------------------------------


def now_ms() -> int:
    """Milliseconds since the epoch: the clock turns are stamped with."""
    return time.time_ns() // 1_000_000


class _ServerClock:
    """Milliseconds, never the same twice in this process.

    Two saves of equal text stamped in one millisecond are two messages; giving each its
    own stamp lets a retried save recognise its own earlier attempt by its timestamp.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def stamp(self) -> int:
        with self._lock:
            self._last = max(now_ms(), self._last + 1)
            return self._last


server_stamp = _ServerClock().stamp


# -- the stored form: a JSON array of turns as JSON.stringify writes it --------------------------

_TURN_KEYS = frozenset({"role", "content", "timestamp"})
_OPTIONAL_KEYS = frozenset({"id", "dropped"})
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


def found_as_stored(turn: ChatTurn, text: str) -> bool:
    """Whether `text` (a session's JSON) holds `turn` where the append script finds an equal turn:
    its JSON up to the timestamp's digits, then the turn's end or another of its fields (an id,
    even a null one, or a dropped count). A turn written in another layout is not found."""
    head = turn_prefix(turn) + str(turn.timestamp)
    return head + "}" in text or head + "," in text


def id_suffix(turn_id: str | None) -> str:
    """What follows a turn's timestamp: its id, if any, and the closing brace."""
    return "}" if turn_id is None else f',"id":{json.dumps(turn_id, ensure_ascii=False)}}}'


def encode_turn(turn: ChatTurn) -> str:
    """Serialise a turn exactly as JavaScript's JSON.stringify would.

    Same key order (after the timestamp, a session's first turn may say how many turns were
    dropped before it, and the id, when there is one, comes last), no spaces, non-ASCII kept as
    is, control characters as `\\n` or `\\u00XX`: equal turns give equal text, which the append
    script relies on to recognise a retried save.
    """
    dropped = "" if turn.dropped is None else f',"dropped":{turn.dropped}'
    return f"{turn_prefix(turn)}{turn.timestamp}{dropped}{id_suffix(turn.id)}"


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
    try:
        # The common case, a value JSON.stringify wrote, parsed and checked in one pass inside
        # pydantic-core. It accepts nothing that JSON.parse reads otherwise (it refuses lone
        # surrogates, invalid UTF-8, a BOM, `1e3` timestamps): those take the careful way below.
        return _stored_session().validate_json(value)
    except ValidationError:
        pass
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte order mark: TextDecoder drops it before JSON.parse reads
    try:
        parsed = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise corrupt(session_id, f"not valid JSON at character {exc.pos}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise corrupt(session_id, f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(parsed, list):
        raise corrupt(session_id, f"a JSON {_json_type(parsed)}, not an array")
    return [_turn(item, index, session_id) for index, item in enumerate(parsed)]


@functools.cache
def _stored_session() -> TypeAdapter[list[ChatTurn]]:
    return TypeAdapter(list[ChatTurn])


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
        raise corrupt(session_id, f"{where} is a JSON {_json_type(item)}, not an object")
    if item.keys() != _TURN_KEYS and not (_TURN_KEYS < item.keys() <= _TURN_KEYS | _OPTIONAL_KEYS):
        extra = sorted(item.keys() - _TURN_KEYS - _OPTIONAL_KEYS)
        missing = sorted(_TURN_KEYS - item.keys())
        problem = f"has unexpected keys {extra}" if extra else f"lacks {missing}"
        raise corrupt(session_id, f"{where} {problem}")
    role, content, timestamp = item["role"], item["content"], item["timestamp"]
    turn_id, dropped = item.get("id"), item.get("dropped")
    if turn_id is not None and not isinstance(turn_id, str):
        raise corrupt(session_id, f"{where} has an id that is a JSON {_json_type(turn_id)}, not a string")
    if dropped is not None and not _is_timestamp(dropped):
        raise corrupt(session_id, f"{where} has dropped {dropped!r}; it must be a count of turns")
    if role not in _ROLES:
        raise corrupt(session_id, f"{where} has role {role!r}; it must be 'user' or 'assistant'")
    if not isinstance(content, str):
        raise corrupt(session_id, f"{where} has content that is a JSON {_json_type(content)}, not a string")
    if not _is_timestamp(timestamp):
        raise corrupt(
            session_id, f"{where} has timestamp {timestamp!r}; it must be an integer from 0 to 2^53-1"
        )
    if not content.isascii():
        content = _LONE_SURROGATE.sub("\ufffd", content)
    if turn_id is not None and not turn_id.isascii():
        turn_id = _LONE_SURROGATE.sub("\ufffd", turn_id)
    count = None if dropped is None else int(dropped)
    return ChatTurn.model_construct(
        role=role, content=content, timestamp=int(timestamp), dropped=count, id=turn_id
    )


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


# -- a save, planned: turns with their timestamps and how an equal stored turn counts ------------

# A batch of more turns than this is refused: it would be one huge command and one long lock.
MAX_BATCH_TURNS = 100
# A retry is recognised while its turn lies within the newest this-many bytes of the stored
# session: the append script reads no further back (its WINDOW). SQLite looks further.
RETRY_WINDOW_BYTES = 32768

# 'keep': the caller's timestamp, an equal stored turn is this one; 'move': the server's clock.
TurnMode = Literal["keep", "move"]


@dataclass(frozen=True)
class PlannedTurn:
    """A turn ready to append: its JSON up to the timestamp, the timestamp, the mode, the id."""

    role: Role
    content: str
    prefix: str
    timestamp: int
    mode: TurnMode
    id: str

    @property
    def text(self) -> str:
        """The turn as stored: JSON.stringify's layout."""
        return f"{self.prefix}{self.timestamp}{id_suffix(self.id)}"


@dataclass(frozen=True)
class PlannedSave:
    """A save ready to send: its id, its turns, and when it began (ms, this server's clock), which
    tells a late attempt from a save made after a delete."""

    id: str
    turns: list[PlannedTurn]
    started_at: int
    title: str | None  # the session's title, if this save creates it
    # Whether the caller gave an id: then this save may be a retry, whose first attempt is
    # looked for through the whole session, not only its newest bytes.
    caller_ids: bool


_TURN_ID = re.compile(TURN_ID_PATTERN)


def plan_save(
    turns: Sequence[ChatTurn | NewTurn], config: StoreConfig, save_id: str | None = None
) -> PlannedSave:
    """Check the turns and give each its id, its timestamp and how an equal stored turn counts.

    A turn whose id is stored is this save's earlier attempt, whatever the mode. A caller's
    timestamp also makes an equal stored turn a retry ('keep'); the server's clock makes it
    another message, so the timestamp moves past it ('move').
    """
    started_at = now_ms()
    caller_id = save_id
    if save_id is None and len(turns) == 1 and turns[0].id is not None:
        save_id = turns[0].id  # a turn saved alone: the save's id is the turn's
    elif save_id is None:
        save_id = new_save_id()
    else:
        check_save_id(save_id)
    if not turns:
        raise InvalidRequestError("there are no turns to save")
    if len(turns) > MAX_BATCH_TURNS:
        raise InvalidRequestError(f"{len(turns)} turns in one save; the maximum is {MAX_BATCH_TURNS}")
    planned = []
    for index, turn in enumerate(turns):
        which = f"turn {index}'s" if len(turns) > 1 else "the turn's"
        check_unicode(turn, which)
        most = config.max_content_chars
        if len(turn.content) > most:
            raise TurnTooLargeError(
                f"{which} content is {len(turn.content)} characters; the maximum is {most}"
            )
        turn_id = turn.id or (save_id if len(turns) == 1 else f"{save_id}#{index}")
        if not _TURN_ID.match(turn_id):
            raise InvalidRequestError(f"{which} id {turn_id!r} is not one this store writes; {ID_RULE}")
        mode: TurnMode = "move" if turn.timestamp is None else "keep"
        stamp = server_stamp() if turn.timestamp is None else turn.timestamp
        planned.append(PlannedTurn(turn.role, turn.content, turn_prefix(turn), stamp, mode, turn_id))
    if len({turn.id for turn in planned}) < len(planned):
        raise InvalidRequestError("two turns of the save have the same id; each needs its own")
    # The batch as it would be stored alone, `[t1,…,tn]`: past the session limit no session could
    # hold it, so it is refused here rather than sent as one large command holding a long lock.
    size = 1 + sum(len(turn.text.encode()) + 1 for turn in planned)
    if size > config.max_session_bytes:
        what = "the turn takes" if len(planned) == 1 else f"the {len(planned)} turns take"
        raise SessionFullError(
            f"{what} {size} bytes as stored, more than a whole session may hold "
            f"({config.max_session_bytes} bytes); nothing was saved (save fewer or shorter turns)"
        )
    title = session_title([(t.role, t.content) for t in turns])
    caller_ids = caller_id is not None or any(turn.id is not None for turn in turns)
    return PlannedSave(save_id, planned, started_at, title, caller_ids)


def check_unicode(turn: ChatTurn | NewTurn, which: str) -> None:
    """Refuse a turn whose text holds a lone surrogate: it has no UTF-8 form, so it could never be
    stored (a NewTurn refuses it when made; a ChatTurn, made by reads too, here)."""
    for name, text in (("content", turn.content), ("id", turn.id or "")):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError(
                f"{which} {name} holds an unpaired surrogate, which is not valid Unicode text"
            ) from None


def check_save_id(save_id: str) -> str:
    """Return the id unchanged, or raise InvalidRequestError saying what is wrong."""
    if not re.fullmatch(ID_PATTERN[1:-1], save_id):
        shown = save_id if len(save_id) <= MAX_ID_CHARS + 16 else save_id[: MAX_ID_CHARS + 16] + "…"
        raise InvalidRequestError(f"the id {shown!r} is not valid; {ID_RULE}")
    return save_id


# More turns than any session holds: a larger `last` means the whole session, and is cut to
# this so that it fits the stores' integers (GETRANGE offsets, SQLite's LIMIT).
_MOST_TURNS = 2**31 - 1


def check_last(last: int | None) -> int | None:
    """`last` as the stores use it: None for all, else at least 1 and at most any session's length."""
    if last is None:
        return None
    if isinstance(last, bool) or last < 1:
        raise InvalidRequestError(f"last must be at least 1 (got {last}); omit it for the whole session")
    return min(last, _MOST_TURNS)


def check_window(before: int | None, max_chars: int | None) -> None:
    if before is not None and (isinstance(before, bool) or not 0 <= before <= MAX_SAFE_INTEGER):
        raise InvalidRequestError(f"before must be a timestamp from 0 to 2^53-1 (got {before})")
    if max_chars is not None and (isinstance(max_chars, bool) or max_chars < 0):
        raise InvalidRequestError(f"max_chars must be 0 or more (got {max_chars})")


def newest_window(
    turns: list[ChatTurn], last: int | None, before: int | None, max_chars: int | None
) -> list[ChatTurn]:
    """The turns below `before`, then the newest of them within `last` and `max_chars`."""
    if before is not None:
        turns = [turn for turn in turns if turn.timestamp < before]
    if last is not None:
        turns = turns[-last:]
    if max_chars is not None:
        used, start = 0, len(turns)
        while start > 0 and used + len(turns[start - 1].content) <= max_chars:
            start -= 1
            used += len(turns[start].content)
        turns = turns[start:]
    return turns


def expiry_ms(config: StoreConfig, now: int | None = None) -> int:
    """When a session saved at `now` (default: now) expires, in ms since the epoch."""
    return (now_ms() if now is None else now) + config.session_ttl_seconds * 1000
