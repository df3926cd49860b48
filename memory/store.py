"""The interface every backend implements."""

from __future__ import annotations

from typing import Protocol

from memory.models import ChatTurn, SaveResult


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

    async def save_turn(self, session_id: str, turn: ChatTurn) -> SaveResult:
        """Append a turn atomically and reset the TTL; a turn already stored is not stored again."""
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
