"""The real console script plus no-op twins of its tools; run by the MCP benchmark.

`noop_save_turn`, `noop_get_session` (and the other two) are the real tools, registered a
second time over a store that does nothing: same parameters, same validation, same result
type, and for `noop_get_session` the same 20 turns the benchmark stores. The difference
between a tool and its twin is what the store call costs inside the tool.

It takes the console script's flags and serves through the same code (`server.cli.main`), so
the benchmark measures what users run; only its log level defaults to WARNING.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, cast

from mcp.server.mcpserver import MCPServer

from bench.data import filler_turns
from memory import (
    BatchSaveResult,
    ChatTurn,
    NewTurn,
    PutOutcome,
    SaveResult,
    SessionPage,
    SessionStore,
    TurnOutcome,
    new_save_id,
    now_ms,
)
from server import cli
from server.app import HttpAuth, build_server
from server.settings import Settings
from server.tools import register_tools

NOOP_PREFIX = "noop_"
# What noop_get_session answers, whatever the session: the turns the benchmark reads.
NOOP_SESSION_TURNS = 20


class NoopStore:
    """A SessionStore that stores nothing and answers at once."""

    backend = "noop"
    location = "nowhere"

    def __init__(self, ttl_seconds: int) -> None:
        self._turns = filler_turns(NOOP_SESSION_TURNS)
        self._ttl_ms = ttl_seconds * 1000

    async def get_session(
        self,
        session_id: str,
        last: int | None = None,
        *,
        before: int | None = None,
        max_chars: int | None = None,
    ) -> list[ChatTurn]:
        return self._turns[-last:] if last else list(self._turns)

    async def save_turn(self, session_id: str, turn: ChatTurn | NewTurn) -> SaveResult:
        return (await self.save_turns(session_id, [turn])).single()

    async def save_turns(
        self, session_id: str, turns: Sequence[ChatTurn | NewTurn], call_id: str | None = None
    ) -> BatchSaveResult:
        now = now_ms()
        outcomes = [
            TurnOutcome(timestamp=now if turn.timestamp is None else turn.timestamp, stored=True)
            for turn in turns
        ]
        return BatchSaveResult(
            session_id=session_id,
            id=call_id or new_save_id(),
            new_session=False,
            turns=outcomes,
            expires_at=now + self._ttl_ms,
        )

    async def delete_session(self, session_id: str) -> bool:
        return True

    async def list_sessions(self, limit: int = 20, cursor: str | None = None) -> SessionPage:
        return SessionPage(sessions=[], next_cursor=None)

    async def put_session(self, session_id: str, turns: Sequence[ChatTurn], expires_at: int) -> PutOutcome:
        return "written"

    async def session_ids_starting_with(self, typed: str, limit: int = 100) -> list[str]:
        return []

    async def check(self, timeout_seconds: float | None = None) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def view(self, namespace: str) -> SessionStore:
        return self

    async def __aenter__(self) -> SessionStore:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        return None


class _Renamed:
    """Passes `add_tool` on to a server with a prefix on each tool's name."""

    def __init__(self, server: MCPServer, prefix: str) -> None:
        self._server = server
        self._prefix = prefix

    def add_tool(self, fn: Callable[..., Any], **options: Any) -> None:
        self._server.add_tool(fn, name=self._prefix + fn.__name__, **options)


def add_noop_tools(server: MCPServer, settings: Settings) -> None:
    store: SessionStore = NoopStore(settings.session_ttl_seconds)
    register_tools(
        cast(MCPServer, _Renamed(server, NOOP_PREFIX)),
        lambda: store,
        settings.max_content_chars,
        settings.session_ttl_seconds,
    )


def bench_server(store: SessionStore, settings: Settings, *, auth: HttpAuth | None = None) -> MCPServer:
    server = build_server(store, settings, auth=auth)
    add_noop_tools(server, settings)
    return server


def main() -> None:
    cli.main(["--log-level", "WARNING", *sys.argv[1:]], build=bench_server)


if __name__ == "__main__":
    main()
