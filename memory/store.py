"""The interface every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from memory.models import BatchSaveResult, ChatTurn, NewTurn, SaveResult


class SessionStore(Protocol):
    """Short-term chat memory: one JSON array of turns per session, with a TTL."""

    @property
    def backend(self) -> str:
        """`upstash`, `redis` or `sqlite`."""
        ...

    @property
    def location(self) -> str:
        """Where the data lives, safe to log (no credentials)."""
        ...

    async def get_session(self, session_id: str, last: int | None = None) -> list[ChatTurn]:
        """The turns oldest first (only the newest `last` when given); [] if missing or expired."""
        ...

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        """Append a turn atomically and reset the TTL (see `save_turns`)."""
        ...

    async def save_turns(self, session_id: str, turns: Sequence[ChatTurn | NewTurn]) -> BatchSaveResult:
        """Append turns atomically, in order, and reset the TTL.

        A turn with a timestamp that equals a stored turn (role, content, timestamp) is a
        retry and is not stored again; a turn without one is stamped with the store's clock,
        moved to the next free millisecond past an equal turn, and never merged.
        """
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Forget a session; False if there was none."""
        ...

    async def check(self, timeout_seconds: float | None = None) -> None:
        """One cheap command (PING, or a trivial query); raises what a tool call would raise."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...

    def namespaced(self, namespace: str) -> SessionStore:
        """A view of this open store (same connection) whose keys carry `namespace` after the prefix."""
        ...
