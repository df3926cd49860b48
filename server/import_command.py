"""`session-memory-mcp import`: read the JSON Lines an export wrote into the configured store.

Each session is put whole where none of its id exists, with its turns' timestamps and ids and
its expiry; an existing session is never changed. Importing the same lines again changes
nothing. A malformed line stops the import there (what came before it stays imported).
A few sessions are put at once, so an import across the network is not one round trip a line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from pydantic import ValidationError

from memory import (
    CorruptSessionError,
    InvalidRequestError,
    PutOutcome,
    SessionFullError,
    SessionMemoryError,
    open_store,
)
from server.envfiles import env_files
from server.export_command import ExportedSession
from server.isolation import client_namespace
from server.settings import Settings

PROG = "session-memory-mcp import"
OUTCOMES: tuple[PutOutcome, ...] = ("written", "unchanged", "differs", "expired")
# Sessions put at once: a store across the network answers each put in a round trip (two for
# one that exists), and a few at a time hide most of it without crowding the servers that serve.
CONCURRENT_PUTS = 8
# Enough to see what is wrong with a line without flooding the terminal.
PROBLEMS_SHOWN = 3


class MalformedLineError(Exception):
    """A line that is not a session as an export writes it; the import stops there."""


@dataclass
class ImportTally:
    """How many sessions had each outcome, and which ones need a look (line number, id, why)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*OUTCOMES, "refused"), 0))
    differing: list[tuple[int, str]] = field(default_factory=list)
    refused: list[tuple[int, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(f"{count} {outcome}" for outcome, count in self.counts.items())


def import_main(argv: Sequence[str], load_settings: Callable[[Sequence[Path]], Settings]) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read sessions, as `session-memory-mcp export` writes them (JSON Lines, one session "
        "a line), into the configured store, keeping their timestamps, ids and expiry. A session that "
        "exists already is left as it is: unchanged if it holds the same turns, else reported as "
        "differing. Importing twice changes nothing. Exits with status 1 if a line is malformed, a "
        "session is refused or one differs.",
    )
    parser.add_argument(
        "path", nargs="?", type=Path, metavar="PATH", help="the export to read (default: stdin)"
    )
    parser.add_argument(
        "--client", metavar="NAME", help="into the key space of this client (SESSION_ISOLATION=per-client)"
    )
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file")
    args = parser.parse_args(argv)
    settings = load_settings(env_files(args.env_file, Path.cwd()))
    namespace = "" if args.client is None else client_namespace(args.client)
    if args.path is not None and not args.path.is_file():
        raise SystemExit(f"{PROG}: {args.path}: no such file")
    tally = ImportTally()
    failure: str | None = None
    try:
        if args.path is None:
            anyio.run(import_sessions, settings, namespace, sys.stdin.buffer, tally)
        else:
            with args.path.open("rb") as source:
                anyio.run(import_sessions, settings, namespace, source, tally)
    except MalformedLineError as exc:
        failure = f"{exc}; the import stopped there, the lines before it are imported as counted below"
    except SessionMemoryError as exc:
        # Puts run a few at once: those under way may have been stored (a write that reached the
        # store but not enough replicas, say) without being counted.
        failure = (
            f"{exc}; the import stopped there: the sessions counted below are imported, and those "
            "under way when it stopped may be too; once the cause is fixed, import the same file "
            "again (what is stored already counts as unchanged)"
        )
    for number, session_id in tally.differing:
        print(
            f"{PROG}: line {number}: session {session_id!r} exists with other turns; left as it is",
            file=sys.stderr,
        )
    for number, session_id, problem in tally.refused:
        print(f"{PROG}: line {number}: session {session_id!r} refused: {problem}", file=sys.stderr)
    if failure is not None:
        print(f"{PROG}: {failure}", file=sys.stderr)
    print(f"{PROG}: {tally.summary()}", file=sys.stderr)
    if failure is not None or tally.differing or tally.refused:
        raise SystemExit(1)


async def import_sessions(settings: Settings, namespace: str, source: BinaryIO, tally: ImportTally) -> None:
    """Put each session `source` holds into `namespace`, counting outcomes in `tally`.

    A few sessions are put at once, in the order of their lines. On a malformed line or a store
    error no further line is started, and the sessions already under way are finished (and
    counted) before the error is raised, so that what the tally counts is what was imported.
    """
    async with open_store(settings.store_config()) as opened:
        # The settings proven first, as the server does: a TLS URL aimed at a plain port, say, is
        # named as that rather than as an outage.
        await opened.check()
        store = opened.view(namespace) if namespace else opened
        slots = anyio.Semaphore(CONCURRENT_PUTS)
        failures: list[Exception] = []

        async def put(number: int, session: ExportedSession) -> None:
            try:
                outcome = await store.put_session(session.session_id, session.turns, session.expires_at)
            except (InvalidRequestError, SessionFullError, CorruptSessionError) as exc:
                tally.counts["refused"] += 1
                tally.refused.append((number, session.session_id, str(exc)))
                return
            except SessionMemoryError as exc:
                failures.append(exc)  # raised from here, it would cancel the puts under way
                return
            finally:
                slots.release()
            tally.counts[outcome] += 1
            if outcome == "differs":
                tally.differing.append((number, session.session_id))

        async with anyio.create_task_group() as group:
            try:
                async for number, session in parse_lines(anyio.wrap_file(source)):
                    await slots.acquire()
                    if failures:
                        slots.release()
                        break
                    group.start_soon(put, number, session)
            except MalformedLineError as exc:
                failures.append(exc)
    tally.differing.sort()
    tally.refused.sort()
    if failures:
        raise failures[0]


async def parse_lines(lines: AsyncIterable[bytes]) -> AsyncIterable[tuple[int, ExportedSession]]:
    """Each non-blank line's number (from 1) and session; MalformedLineError names the first bad one."""
    number = 0
    async for line in lines:
        number += 1
        session = parse_line(line, first=number == 1, number=number)
        if session is not None:
            yield number, session


def parse_line(line: bytes, *, first: bool, number: int) -> ExportedSession | None:
    """The session on one line, or None for a blank line."""
    try:
        # A byte order mark opens files some Windows editors save.
        text = line.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedLineError(
            f"line {number}: not UTF-8 text (byte {exc.start + 1}); an export is UTF-8 JSON Lines"
        ) from None
    if not text.strip():
        return None
    try:
        return ExportedSession.model_validate_json(text)
    except ValidationError as exc:
        raise MalformedLineError(f"line {number}: {describe(exc)}") from None


def describe(error: ValidationError) -> str:
    """What is wrong with a line, field by field, without its values."""
    problems = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        if problem["type"] == "json_invalid":
            problems.append(f"not valid JSON ({problem['msg'].removeprefix('Invalid JSON: ')})")
            continue
        where = ".".join(str(part) for part in problem["loc"]) or "the line"
        if problem["type"] == "extra_forbidden":
            problems.append(f"{where}: not a field of an exported session or turn")
            continue
        problems.append(f"{where}: {problem['msg']}")
    shown = "; ".join(problems[:PROBLEMS_SHOWN])
    more = len(problems) - PROBLEMS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")
