"""The data model shared with the design note's TypeScript layer, and the store interface."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Role = Literal["user", "assistant"]

# Timestamps come from JavaScript's Date.now(); beyond this a JS reader loses precision.
MAX_SAFE_INTEGER = 2**53 - 1

# A save's identity, chosen by the caller or made by the store: what lets a late or repeated
# attempt of the same save find its own turn, and no other message ever share it. Plain ASCII,
# so that it is stored as written and searched for as bytes. '#' is left out: a save of several
# turns stores `{id}#{n}` for its turn n.
MAX_ID_CHARS = 64
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
ID_RULE = f"an id is 1 to {MAX_ID_CHARS} ASCII letters, digits, '.', '_', ':' or '-'"
# The ids turns are stored with: a save's id, or `{id}#{n}` for turn n of a save of several.
TURN_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}(#[0-9]{1,3})?$"


def _encodable_as_utf8(content: str, info: ValidationInfo) -> str:
    # A lone surrogate (e.g. from a JSON "\ud800" escape) has no UTF-8 form,
    # so it could never be stored; refuse it here rather than at the store.
    if info.mode == "json":
        return content  # pydantic's JSON parser refuses lone surrogates itself
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("content holds an unpaired surrogate, which is not valid Unicode text") from exc
    return content


class ChatTurn(BaseModel):
    """One stored turn of a conversation: `{role, content, timestamp}`, in ms since the epoch,
    and the `id` of the save that stored it (absent from turns other writers stored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: Role
    content: str
    timestamp: int = Field(ge=0, le=MAX_SAFE_INTEGER)
    # On a session's first turn only: how many older turns were dropped before it to keep the
    # session under its size limit. Stored right after the timestamp.
    dropped: int | None = Field(default=None, ge=0)
    id: str | None = None

    # No check that the content is valid Unicode here: reads parse every stored turn through this
    # model, and a Python validator per turn costs them a tenth; a save checks it (plan_save).


class NewTurn(BaseModel):
    """A turn to save. Its `id` (made by the store when absent) is how a later attempt of the
    same save finds it, and it is never merged with a turn of another id, with one exception:
    with a timestamp, a stored turn of equal role, content and timestamp counts as this one (a
    retry, as the TypeScript layer's turns, which carry no id, can only be recognised). Without
    one, the store stamps it with its clock."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    role: Role
    content: str
    timestamp: int | None = Field(default=None, ge=0, le=MAX_SAFE_INTEGER)
    id: str | None = Field(default=None, pattern=ID_PATTERN)

    check_utf8 = field_validator("content")(_encodable_as_utf8)


class TurnOutcome(BaseModel):
    """What a save did with one turn."""

    timestamp: int = Field(description="The turn's timestamp as stored, in ms since the epoch.")
    stored: bool = Field(
        description="False when the turn was already there: stored by an earlier attempt with the "
        "same id, or an equal turn (same role, content and timestamp) when the timestamp was given."
    )


class BatchSaveResult(BaseModel):
    """What a save of several turns did."""

    session_id: str
    id: str = Field(description="The save's id: repeat it when retrying this save.")
    new_session: bool = Field(description="True when this save created the session.")
    turns: list[TurnOutcome] = Field(description="One entry per turn given, in order.")
    expires_at: int = Field(description="When the session expires, in milliseconds since the epoch.")
    dropped: int = Field(
        default=0,
        description="How many of the session's oldest turns this save dropped to stay under its size limit.",
    )

    def single(self) -> SaveResult:
        """The result of a save of one turn."""
        (turn,) = self.turns
        return SaveResult(
            session_id=self.session_id,
            id=self.id,
            new_session=self.new_session,
            stored=turn.stored,
            timestamp=turn.timestamp,
            expires_at=self.expires_at,
            dropped=self.dropped,
        )


class SaveResult(BaseModel):
    """What a save of one turn did."""

    session_id: str
    id: str = Field(description="The save's id, stored with the turn: repeat it when retrying this save.")
    new_session: bool = Field(description="True when this save created the session.")
    stored: bool = Field(
        description="False when the turn was already there: stored by an earlier attempt with the "
        "same id, or an equal turn (same role, content and timestamp) when the timestamp was given."
    )
    timestamp: int = Field(description="The turn's timestamp as stored, in ms since the epoch.")
    expires_at: int = Field(description="When the session expires, in milliseconds since the epoch.")
    dropped: int = Field(
        default=0,
        description="How many of the session's oldest turns this save dropped to stay under its size limit.",
    )


class SessionSummary(BaseModel):
    """A session as a list of sessions shows it."""

    session_id: str
    title: str | None = Field(
        description="The first user message of the session's first save, cut to a readable length "
        "(None when this server did not create the session and no reindex has run since)."
    )
    updated_at: int = Field(description="When the session was last saved to, in ms since the epoch.")
    expires_at: int = Field(description="When it expires unless saved to again, in ms since the epoch.")


class SessionPage(BaseModel):
    """One page of a list of sessions, most recently saved first."""

    sessions: list[SessionSummary]
    next_cursor: str | None = Field(description="Pass it to get the next page; None on the last page.")


# What putting a whole session did: written (it did not exist), unchanged (it held exactly these
# turns), differs (it holds others: left as it is), expired (its expiry has passed: not written).
PutOutcome = Literal["written", "unchanged", "differs", "expired"]


class SessionStore(Protocol):
    """Short-term chat memory: one JSON array of turns per session, with a TTL.

    An async context manager: leaving `async with` closes it.
    """

    @property
    def backend(self) -> str:
        """`upstash`, `redis` or `sqlite`."""
        ...

    @property
    def location(self) -> str:
        """Where the data lives, safe to log (no credentials)."""
        ...

    async def get_session(
        self,
        session_id: str,
        last: int | None = None,
        *,
        before: int | None = None,
        max_chars: int | None = None,
    ) -> list[ChatTurn]:
        """The turns oldest first; [] if missing or expired. `before` keeps the turns whose
        timestamp is below it (in stored order: for paging back through a long session); then
        `last` keeps the newest N and `max_chars` the newest whose contents, summed in code
        points, fit in that many characters ([] if the newest alone does not)."""
        ...

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        """Append a turn atomically and reset the TTL (see `save_turns`)."""
        ...

    async def save_turns(
        self, session_id: str, turns: Sequence[ChatTurn | NewTurn], call_id: str | None = None
    ) -> BatchSaveResult:
        """Append turns atomically, in order, and reset the TTL.

        The save has an id (`call_id`, or one the store makes); a single turn is stored with
        it, turn n of several with `{call_id}#{n}`, unless the turn brings its own. A turn
        whose id is already stored is not stored again (an earlier attempt of this save), nor
        is a turn with a timestamp equal to a stored turn (role, content, timestamp). A turn
        without a timestamp is stamped with the store's clock and moved to the next free
        millisecond past an equal turn of another id.
        """
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Forget a session; False if there was none. A save that began before the delete and
        reaches the store after it does not bring the session back."""
        ...

    async def put_session(self, session_id: str, turns: Sequence[ChatTurn], expires_at: int) -> PutOutcome:
        """Write a whole session that does not exist, with its turns (timestamps and ids as given)
        and its expiry (ms since the epoch), atomically; what an import does. An existing session
        is never changed: "unchanged" when it holds exactly these turns (role, content,
        timestamp), else "differs". A session larger than the size limit is refused."""
        ...

    async def list_sessions(self, limit: int = 20, cursor: str | None = None) -> SessionPage:
        """The sessions of this key space, most recently saved first, `limit` at a time.

        A cursor stays valid while sessions are saved: every session not saved in between
        appears once across the pages. Raises InvalidRequestError for a cursor this key space
        did not hand out, and SessionIndexOffError when the index is off.
        """
        ...

    async def session_ids_starting_with(self, typed: str, limit: int = 100) -> list[str]:
        """Ids of this key space's sessions that start with `typed`, most recently saved first
        (among the newest sessions only); [] when the index is off."""
        ...

    async def check(self, timeout_seconds: float | None = None) -> None:
        """One cheap command (PING, or a trivial query); raises what a tool call would raise."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...

    def view(self, namespace: str) -> SessionStore:
        """This open store (same connection) with `namespace` after the key prefix."""
        ...

    async def __aenter__(self) -> SessionStore: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None: ...
