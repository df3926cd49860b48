"""`session-memory-mcp reindex`: put sessions the index does not know into it, on Redis or Upstash.

Sessions the design note's TypeScript layer writes (or any written before the index existed)
are not in the session index, so they are not listed. This scans the store's keys under
`KEY_PREFIX`, a page at a time, and indexes every session it finds; it is safe to run while
servers serve, and running it again changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from memory import SessionMemoryError, open_store
from server.envfiles import env_files
from server.settings import Settings


def reindex_main(argv: Sequence[str], load_settings: Callable[[Sequence[Path]], Settings]) -> None:
    parser = argparse.ArgumentParser(
        prog="session-memory-mcp reindex",
        description="Index the sessions the session index does not know (written by the TypeScript "
        "layer, or before the index existed), so that list_sessions and resources/list show them. "
        "Redis and Upstash only; safe while servers run.",
    )
    parser.add_argument("--env-file", type=Path, metavar="PATH", help="read settings from this file")
    args = parser.parse_args(argv)
    settings = load_settings(env_files(args.env_file, Path.cwd()))
    if settings.backend in ("sqlite", "postgres"):
        name = "SQLite" if settings.backend == "sqlite" else "PostgreSQL"
        print(f"session-memory-mcp reindex: the {name} store lists every session it holds; nothing to do")
        return
    if not settings.session_index:
        raise SystemExit("session-memory-mcp reindex: SESSION_INDEX=off: this server keeps no index to fill")
    try:
        indexed, seen, skipped = anyio.run(_reindex, settings)
    except SessionMemoryError as exc:
        raise SystemExit(f"session-memory-mcp reindex: {exc}") from None
    for reason in skipped:
        print(f"session-memory-mcp reindex: skipped {reason}", file=sys.stderr)
    sessions = "session" if indexed == 1 else "sessions"
    print(f"session-memory-mcp reindex: indexed {indexed} {sessions} among {seen} keys under the key prefix")


async def _reindex(settings: Settings) -> tuple[int, int, list[str]]:
    from memory.redis_store import RedisStore

    async with open_store(settings.store_config()) as store:
        assert isinstance(store, RedisStore)  # the backend is Redis or Upstash here
        await store.check()  # the settings proven first, as the server does
        return await store.reindex()
