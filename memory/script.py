"""The Lua script that appends a turn, shared by the Redis and Upstash backends."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

from memory.errors import StoreError
from memory.rules import AppendOutcome, Limits

_OUTCOMES: frozenset[str] = frozenset({"stored", "duplicate", "session_full", "not_a_session"})


@dataclass(frozen=True)
class LuaScript:
    source: str
    sha1: str


@functools.cache
def append_turn_script() -> LuaScript:
    source = resources.files("memory").joinpath("append_turn.lua").read_text(encoding="utf-8")
    return LuaScript(
        source=source, sha1=hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
    )


def append_arguments(encoded_turn: str, limits: Limits) -> list[str]:
    """ARGV for the script, in the order it reads them."""
    return [encoded_turn, str(limits.ttl_seconds), str(limits.max_session_bytes)]


def parse_append_reply(reply: object) -> tuple[AppendOutcome, int]:
    """Read the script's `{outcome, turn_count}` reply, whichever client decoded it."""
    if isinstance(reply, list) and len(reply) == 2:
        outcome, count = reply
        if isinstance(outcome, bytes):
            outcome = outcome.decode("ascii", "replace")
        if outcome in _OUTCOMES and isinstance(count, int):
            return outcome, count
    raise StoreError("the store answered the append script with an unexpected reply")
