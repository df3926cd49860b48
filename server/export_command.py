"""`session-memory-mcp export`: every session of a key space as JSON Lines, one session a line.

A line is `ExportedSession` as JSON: `{"session_id", "title", "updated_at", "expires_at",
"turns": [{"role", "content", "timestamp", "id"?}, ...]}`, which `session-memory-mcp import`
reads back. The sessions come a page at a time from the session index, newest first, so an
export is safe while servers serve: a session saved in between is exported once, and one that
expires or is deleted between its listing and its reading is left out.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from anyio import CancelScope
from pydantic import BaseModel, ConfigDict, Field

from memory import (
    ChatTurn,
    CorruptSessionError,
    InvalidRequestError,
    SessionMemoryError,
    SessionStore,
    SessionSummary,
    open_store,
)
from server.envfiles import env_files
from server.isolation import client_namespace
from server.settings import Settings

PROG = "session-memory-mcp export"
PAGE_SIZE = 100
# Sessions of a page read at once: a store across the network answers each read in a round
# trip, and a few at a time hide most of it without crowding servers that serve meanwhile.
CONCURRENT_READS = 8
REINDEX_FIRST = (
    "On Redis and Upstash, sessions other programs wrote (the TypeScript layer) are exported only "
    "after `session-memory-mcp reindex`: run it first."
)


class ExportedSession(BaseModel):
    """One line of an export: a session with its turns and expiry (ms since the epoch)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    session_id: str
    title: str | None = Field(default=None, description="As listed; an import makes its own.")
    updated_at: int | None = Field(default=None, description="As listed; an import derives its own.")
    expires_at: int
    turns: list[ChatTurn]

    def line(self) -> bytes:
        """The session as one line of UTF-8 JSON; what is None (a turn's missing id) is left out."""
        return self.model_dump_json(exclude_none=True).encode() + b"\n"


def export_main(argv: Sequence[str], load_settings: Callable[[Sequence[Path]], Settings]) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write the sessions of the shared key space (or of one client, or one session) "
        "to stdout as JSON Lines, one session a line, with their turns, timestamps, ids and expiry; "
        "`session-memory-mcp import` reads them into another store. Safe while servers run. " + REINDEX_FIRST,
    )
    parser.add_argument("--session-id", metavar="ID", help="export this session only")
    parser.add_argument(
        "--client", metavar="NAME", help="the key space of this client (SESSION_ISOLATION=per-client)"
    )
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file")
    args = parser.parse_args(argv)
    settings = load_settings(env_files(args.env_file, Path.cwd()))
    namespace = "" if args.client is None else client_namespace(args.client)
    tally = ExportTally()
    failure: str | None = None
    try:
        anyio.run(export, settings, namespace, args.session_id, sys.stdout.buffer, tally)
    except SessionMemoryError as exc:
        failure = str(exc)
    except BrokenPipeError:
        # The reader stopped reading (`| head`): the rest, and Python's flush at exit, go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        failure = "the output was closed before the export ended"
    for session_id, problem in tally.unreadable:
        print(f"{PROG}: left out session {session_id!r}: {problem}", file=sys.stderr)
    if failure is not None:
        print(f"{PROG}: {failure}", file=sys.stderr)
    sessions = "session" if tally.written == 1 else "sessions"
    print(f"{PROG}: wrote {tally.written} {sessions}", file=sys.stderr)
    if failure is not None or tally.unreadable:
        raise SystemExit(1)


@dataclass
class ExportTally:
    """What an export wrote, and the sessions it could not read (id, why)."""

    written: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)


async def export(
    settings: Settings, namespace: str, session_id: str | None, out: BinaryIO, tally: ExportTally
) -> None:
    """Write the sessions of `namespace` (or the one named) to `out`, a page at a time."""
    sink = anyio.wrap_file(out)
    async with open_store(settings.store_config()) as opened:
        # The settings proven first, as the server does: a TLS URL aimed at a plain port, say, is
        # named as that rather than as an outage.
        await opened.check()
        store = opened.view(namespace) if namespace else opened
        pages = _pages(store) if session_id is None else _one(store, session_id)
        async for summaries in pages:
            exported = await read_listed(store, summaries, tally)
            await sink.write(b"".join(session.line() for session in exported))
            await sink.flush()
            tally.written += len(exported)


async def read_listed(
    store: SessionStore, summaries: list[SessionSummary], tally: ExportTally
) -> list[ExportedSession]:
    """The sessions listed, read a few at a time, in the order listed; those gone since are left out."""
    read: list[ExportedSession | None] = [None] * len(summaries)
    limiter = anyio.CapacityLimiter(CONCURRENT_READS)
    failures: list[SessionMemoryError] = []

    async def read_one(index: int, summary: SessionSummary, cancel: CancelScope) -> None:
        async with limiter:
            try:
                turns = await store.get_session(summary.session_id)
            except CorruptSessionError as exc:
                tally.unreadable.append((summary.session_id, str(exc)))
                return
            except SessionMemoryError as exc:
                # Raised from here it would reach the caller wrapped in an exception group.
                failures.append(exc)
                cancel.cancel()
                return
        if turns:  # else it expired or was deleted since it was listed
            read[index] = ExportedSession(
                session_id=summary.session_id,
                title=summary.title,
                updated_at=summary.updated_at,
                expires_at=summary.expires_at,
                turns=turns,
            )

    async with anyio.create_task_group() as group:
        for index, summary in enumerate(summaries):
            group.start_soon(read_one, index, summary, group.cancel_scope)
    if failures:
        raise failures[0]
    return [session for session in read if session is not None]


async def _pages(store: SessionStore) -> AsyncIterator[list[SessionSummary]]:
    cursor: str | None = None
    while True:
        page = await store.list_sessions(PAGE_SIZE, cursor)
        yield page.sessions
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def _one(store: SessionStore, session_id: str) -> AsyncIterator[list[SessionSummary]]:
    """The listing of one session (which holds its expiry), looked for page by page."""
    async for summaries in _pages(store):
        for summary in summaries:
            if summary.session_id == session_id:
                yield [summary]
                return
    if await store.get_session(session_id):
        raise InvalidRequestError(
            f"session {session_id!r} exists but is not in the session index, so its expiry is "
            "unknown; run `session-memory-mcp reindex` first"
        )
    raise InvalidRequestError(f"there is no session {session_id!r} (or it has expired)")
