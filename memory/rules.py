"""What every backend obeys: session ids and keys, the clock, the stored JSON layout, the limits
and the planning of a save; `BaseStore` applies them before a backend's own work, once."""

from __future__ import annotations

import functools
import json
import re
import secrets
import threading
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

from pydantic import StringConstraints, TypeAdapter, ValidationError

from memory.config import StoreConfig
from memory.errors import (
    CorruptSessionError,
    InvalidRequestError,
    InvalidSessionIdError,
    SessionFullError,
    StoreUnavailableError,
    TurnTooLargeError,
    corrupt,
    unavailable_during_save,
)
from memory.models import MAX_SAFE_INTEGER, BatchSaveResult, ChatTurn, NewTurn, Role, SaveResult, SessionStore

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
    if item.keys() != _TURN_KEYS:
        extra = sorted(item.keys() - _TURN_KEYS)
        missing = sorted(_TURN_KEYS - item.keys())
        problem = f"has unexpected keys {extra}" if extra else f"lacks {missing}"
        raise corrupt(session_id, f"{where} {problem}")
    role, content, timestamp = item["role"], item["content"], item["timestamp"]
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
    """A turn ready to append: its JSON up to the timestamp, the timestamp, the mode."""

    role: Role
    content: str
    prefix: str
    timestamp: int
    mode: TurnMode

    @property
    def text(self) -> str:
        """The turn as stored: JSON.stringify's layout."""
        return f"{self.prefix}{self.timestamp}}}"


def plan_turns(turns: Sequence[ChatTurn | NewTurn], config: StoreConfig) -> list[PlannedTurn]:
    """Check the turns and give each its timestamp and how an equal stored turn counts.

    A caller's timestamp makes an equal stored turn a retry ('keep'); the server's clock
    makes it another message, so the timestamp moves past it ('move').
    """
    if not turns:
        raise InvalidRequestError("there are no turns to save")
    if len(turns) > MAX_BATCH_TURNS:
        raise InvalidRequestError(f"{len(turns)} turns in one save; the maximum is {MAX_BATCH_TURNS}")
    planned = []
    for index, turn in enumerate(turns):
        most = config.max_content_chars
        if len(turn.content) > most:
            which = f"turn {index}'s" if len(turns) > 1 else "the turn's"
            raise TurnTooLargeError(
                f"{which} content is {len(turn.content)} characters; the maximum is {most}"
            )
        mode: TurnMode = "move" if turn.timestamp is None else "keep"
        stamp = server_stamp() if turn.timestamp is None else turn.timestamp
        planned.append(PlannedTurn(turn.role, turn.content, turn_prefix(turn), stamp, mode))
    # The batch as it would be stored alone, `[t1,…,tn]`: past the session limit no session could
    # hold it, so it is refused here rather than sent as one large command holding a long lock.
    size = 1 + sum(len(turn.text.encode()) + 1 for turn in planned)
    if size > config.max_session_bytes:
        what = "the turn takes" if len(planned) == 1 else f"the {len(planned)} turns take"
        raise SessionFullError(
            f"{what} {size} bytes as stored, more than a whole session may hold "
            f"({config.max_session_bytes} bytes); nothing was saved (save fewer or shorter turns)"
        )
    return planned


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


def expiry_ms(config: StoreConfig, now: int | None = None) -> int:
    """When a session saved at `now` (default: now) expires, in ms since the epoch."""
    return (now_ms() if now is None else now) + config.session_ttl_seconds * 1000


# -- the store every backend is, and views of it -------------------------------------------------

S = TypeVar("S", bound="BaseStore")


class BaseStore(ABC):
    """The public face of every backend: it checks and plans each request, then hands the backend
    a key (prefix, namespace, `session:{id}`) to read, append to or delete."""

    backend: str  # `upstash`, `redis` or `sqlite`

    def __init__(self, config: StoreConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def location(self) -> str: ...

    @abstractmethod
    async def _read(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]: ...

    @abstractmethod
    async def _append(self, key: str, session_id: str, planned: Sequence[PlannedTurn]) -> BatchSaveResult: ...

    @abstractmethod
    async def _delete(self, key: str) -> bool: ...

    @abstractmethod
    async def check(self, timeout_seconds: float | None = None) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    async def get_session(self, session_id: str, last: int | None = None) -> list[ChatTurn]:
        return await self.get_in("", session_id, last)

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        return (await self.save_in("", session_id, [turn])).single()

    async def save_turns(self, session_id: str, turns: Sequence[ChatTurn | NewTurn]) -> BatchSaveResult:
        return await self.save_in("", session_id, turns)

    async def delete_session(self, session_id: str) -> bool:
        return await self.delete_in("", session_id)

    def view(self, namespace: str) -> SessionStore:
        return StoreView(self, namespace)

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    # The same operations in a namespace: what a view calls.

    async def get_in(self, namespace: str, session_id: str, last: int | None) -> list[ChatTurn]:
        key = self._key(namespace, session_id)
        return await self._read(key, session_id, check_last(last))

    async def save_in(
        self, namespace: str, session_id: str, turns: Sequence[ChatTurn | NewTurn]
    ) -> BatchSaveResult:
        key = self._key(namespace, session_id)
        planned = plan_turns(turns, self.config)
        try:
            return await self._append(key, session_id, planned)
        except StoreUnavailableError as exc:
            raise unavailable_during_save(exc, [turn.timestamp for turn in planned]) from exc

    async def delete_in(self, namespace: str, session_id: str) -> bool:
        return await self._delete(self._key(namespace, session_id))

    def _key(self, namespace: str, session_id: str) -> str:
        return session_key(self.config.key_prefix + namespace, check_session_id(session_id))


class StoreView:
    """An open store whose keys carry `namespace` after the prefix: same connection, same
    housekeeping; closing a view leaves the store open (its owner closes it)."""

    def __init__(self, store: BaseStore, namespace: str) -> None:
        self._store = store
        self.namespace = namespace

    @property
    def backend(self) -> str:
        return self._store.backend

    @property
    def location(self) -> str:
        return self._store.location

    async def get_session(self, session_id: str, last: int | None = None) -> list[ChatTurn]:
        return await self._store.get_in(self.namespace, session_id, last)

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        return (await self._store.save_in(self.namespace, session_id, [turn])).single()

    async def save_turns(self, session_id: str, turns: Sequence[ChatTurn | NewTurn]) -> BatchSaveResult:
        return await self._store.save_in(self.namespace, session_id, turns)

    async def delete_session(self, session_id: str) -> bool:
        return await self._store.delete_in(self.namespace, session_id)

    async def check(self, timeout_seconds: float | None = None) -> None:
        await self._store.check(timeout_seconds)

    async def aclose(self) -> None:
        """Nothing to release: the store this view looks into owns the connection."""

    def view(self, namespace: str) -> SessionStore:
        return StoreView(self._store, self.namespace + namespace)

    async def __aenter__(self) -> StoreView:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
