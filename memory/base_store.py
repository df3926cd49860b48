"""The store every backend is: `BaseStore` checks and plans each request by the rules of
`memory.rules`, then hands the backend a key to read, append to or delete; `StoreView` is one
client's namespace of it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

from memory.config import StoreConfig
from memory.errors import (
    InvalidRequestError,
    SessionFullError,
    StoreUnavailableError,
    index_off,
    unavailable_during_save,
)
from memory.index import ListPosition, check_page_size, decode_cursor, encode_cursor
from memory.models import (
    BatchSaveResult,
    ChatTurn,
    NewTurn,
    PutOutcome,
    SaveResult,
    SessionPage,
    SessionStore,
    SessionSummary,
)
from memory.rules import (
    PlannedSave,
    check_last,
    check_session_id,
    check_unicode,
    check_window,
    encode_session,
    newest_window,
    now_ms,
    plan_save,
    session_key,
)


def _plain(turns: Sequence[ChatTurn]) -> list[tuple[str, str, int]]:
    return [(turn.role, turn.content, turn.timestamp) for turn in turns]


# -- the store every backend is, and views of it -------------------------------------------------

S = TypeVar("S", bound="BaseStore")


class BaseStore(ABC):
    """The public face of every backend: it checks and plans each request, then hands the backend
    a key (prefix, namespace, `session:{id}`) to read, append to or delete."""

    backend: str  # `upstash`, `redis`, `postgres` or `sqlite`

    def __init__(self, config: StoreConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def location(self) -> str: ...

    @abstractmethod
    async def _read(self, key: str, session_id: str, last: int | None) -> list[ChatTurn]: ...

    @abstractmethod
    async def _append(self, key: str, session_id: str, save: PlannedSave) -> BatchSaveResult: ...

    @abstractmethod
    async def _delete(self, key: str, session_id: str) -> bool:
        """Delete the session and its index entry, and leave a marker that keeps a late save from
        creating it again."""

    @abstractmethod
    async def _put(
        self, key: str, session_id: str, turns: Sequence[ChatTurn], expires_at: int, updated_at: int
    ) -> bool:
        """Write the session whole unless the key exists; whether it was written."""

    @abstractmethod
    async def _list(
        self, space: str, live_after: int, after: ListPosition | None, limit: int
    ) -> tuple[list[SessionSummary], bool]:
        """Up to `limit` indexed sessions of `space` saved after `live_after` (ms), from `after`
        on, most recent first, and whether more follow."""

    @abstractmethod
    async def _ids_starting_with(self, space: str, live_after: int, typed: str, limit: int) -> list[str]: ...

    @abstractmethod
    async def _cursor_secret(self) -> bytes:
        """A secret every server on this store shares (kept in the store), which signs cursors."""

    @abstractmethod
    async def check(self, timeout_seconds: float | None = None) -> None: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    async def get_session(
        self,
        session_id: str,
        last: int | None = None,
        *,
        before: int | None = None,
        max_chars: int | None = None,
    ) -> list[ChatTurn]:
        return await self.get_in("", session_id, last, before, max_chars)

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        return (await self.save_in("", session_id, [turn])).single()

    async def save_turns(
        self, session_id: str, turns: Sequence[ChatTurn | NewTurn], call_id: str | None = None
    ) -> BatchSaveResult:
        return await self.save_in("", session_id, turns, call_id)

    async def delete_session(self, session_id: str) -> bool:
        return await self.delete_in("", session_id)

    async def list_sessions(self, limit: int = 20, cursor: str | None = None) -> SessionPage:
        return await self.list_in("", limit, cursor)

    async def put_session(self, session_id: str, turns: Sequence[ChatTurn], expires_at: int) -> PutOutcome:
        return await self.put_in("", session_id, turns, expires_at)

    async def session_ids_starting_with(self, typed: str, limit: int = 100) -> list[str]:
        return await self.ids_in("", typed, limit)

    def view(self, namespace: str) -> SessionStore:
        return StoreView(self, namespace)

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    # The same operations in a namespace: what a view calls.

    async def get_in(
        self,
        namespace: str,
        session_id: str,
        last: int | None,
        before: int | None = None,
        max_chars: int | None = None,
    ) -> list[ChatTurn]:
        key = self._key(namespace, session_id)
        last = check_last(last)
        if before is None and max_chars is None:
            return await self._read(key, session_id, last)
        check_window(before, max_chars)
        # The whole session: `before` may reach any turn, and a turn's characters are not its bytes.
        return newest_window(await self._read(key, session_id, None), last, before, max_chars)

    async def save_in(
        self,
        namespace: str,
        session_id: str,
        turns: Sequence[ChatTurn | NewTurn],
        call_id: str | None = None,
    ) -> BatchSaveResult:
        key = self._key(namespace, session_id)
        save = plan_save(turns, self.config, call_id)
        try:
            return await self._append(key, session_id, save)
        except StoreUnavailableError as exc:
            raise unavailable_during_save(exc, save.id, [turn.timestamp for turn in save.turns]) from exc

    async def delete_in(self, namespace: str, session_id: str) -> bool:
        return await self._delete(self._key(namespace, session_id), session_id)

    async def put_in(
        self, namespace: str, session_id: str, turns: Sequence[ChatTurn], expires_at: int
    ) -> PutOutcome:
        key = self._key(namespace, session_id)
        if expires_at <= now_ms():
            return "expired"
        if not turns:
            raise InvalidRequestError("a session to put needs at least one turn")
        for index, turn in enumerate(turns):
            check_unicode(turn, f"turn {index}'s")
        ids = [turn.id for turn in turns if turn.id is not None]
        if len(set(ids)) < len(ids):
            # A retry of one of them would be taken for the other: refused, as a save refuses it.
            raise InvalidRequestError(
                f"two turns of session {session_id!r} have the same id; each needs its own"
            )
        size = len(encode_session(list(turns)).encode("utf-8"))
        if size > self.config.max_session_bytes:
            raise SessionFullError(
                f"session {session_id!r} takes {size} bytes as stored, more than a session may hold "
                f"({self.config.max_session_bytes} bytes); it was not written"
            )
        # As near as its expiry tells, and never in the future (it may have had a longer TTL).
        updated_at = min(expires_at - self.config.session_ttl_seconds * 1000, now_ms())
        if await self._put(key, session_id, turns, expires_at, updated_at):
            return "written"
        stored = await self._read(key, session_id, None)
        return "unchanged" if _plain(stored) == _plain(turns) else "differs"

    async def list_in(self, namespace: str, limit: int, cursor: str | None) -> SessionPage:
        if not self.config.session_index:
            raise index_off()
        limit = check_page_size(limit)
        space = self.config.key_prefix + namespace
        after = None if cursor is None else decode_cursor(await self._cursor_secret(), space, cursor)
        sessions, more = await self._list(space, self._live_after(), after, limit)
        next_cursor = None
        if more and sessions:
            last = ListPosition(sessions[-1].updated_at, sessions[-1].session_id)
            next_cursor = encode_cursor(await self._cursor_secret(), space, last)
        return SessionPage(sessions=sessions, next_cursor=next_cursor)

    async def ids_in(self, namespace: str, typed: str, limit: int) -> list[str]:
        if not self.config.session_index:
            return []
        space = self.config.key_prefix + namespace
        return await self._ids_starting_with(space, self._live_after(), typed, check_page_size(limit))

    def _live_after(self) -> int:
        """Sessions last saved at or before this moment (ms) have expired."""
        return now_ms() - self.config.session_ttl_seconds * 1000

    def summary(self, session_id: str, updated_at: int, title: str | None) -> SessionSummary:
        expires_at = updated_at + self.config.session_ttl_seconds * 1000
        return SessionSummary(
            session_id=session_id, title=title, updated_at=updated_at, expires_at=expires_at
        )

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

    async def get_session(
        self,
        session_id: str,
        last: int | None = None,
        *,
        before: int | None = None,
        max_chars: int | None = None,
    ) -> list[ChatTurn]:
        return await self._store.get_in(self.namespace, session_id, last, before, max_chars)

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        return (await self._store.save_in(self.namespace, session_id, [turn])).single()

    async def save_turns(
        self, session_id: str, turns: Sequence[ChatTurn | NewTurn], call_id: str | None = None
    ) -> BatchSaveResult:
        return await self._store.save_in(self.namespace, session_id, turns, call_id)

    async def delete_session(self, session_id: str) -> bool:
        return await self._store.delete_in(self.namespace, session_id)

    async def list_sessions(self, limit: int = 20, cursor: str | None = None) -> SessionPage:
        return await self._store.list_in(self.namespace, limit, cursor)

    async def put_session(self, session_id: str, turns: Sequence[ChatTurn], expires_at: int) -> PutOutcome:
        return await self._store.put_in(self.namespace, session_id, turns, expires_at)

    async def session_ids_starting_with(self, typed: str, limit: int = 100) -> list[str]:
        return await self._store.ids_in(self.namespace, typed, limit)

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
