"""The Lua script that appends turns (`append_turns.lua`), its arguments and its reply,
shared by the Redis and Upstash backends."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from memory.errors import StoreError
from memory.planning import PlannedTurn

# Upstash runs a script under its global lock unless the script's first line says it
# touches only the keys it is given; Redis and Valkey refuse the flag.
KEY_LOCKING_SHEBANG = "#!lua flags=allow-key-locking\n"


@dataclass(frozen=True)
class LuaScript:
    source: str
    sha1: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        digest = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        return cls(source=source, sha1=digest)


@functools.cache
def append_script(key_locking: bool) -> LuaScript:
    """The append script, with Upstash's key-locking flag when `key_locking`."""
    source = resources.files("memory").joinpath("append_turns.lua").read_text(encoding="utf-8")
    return LuaScript.of(KEY_LOCKING_SHEBANG + source if key_locking else source)


@dataclass(frozen=True)
class AppendReply:
    outcome: str  # 'saved', 'session_full' or 'not_a_session'
    created: bool
    timestamps: tuple[int, ...]
    states: tuple[int, ...]  # 1 stored, 0 already there, 2 already there as the first turn


def append_arguments(turns: Sequence[PlannedTurn], ttl_seconds: int, max_session_bytes: int) -> list[str]:
    """ARGV for the script, in the order it reads them."""
    arguments = [str(ttl_seconds), str(max_session_bytes)]
    for turn in turns:
        arguments += [turn.prefix, str(turn.timestamp), turn.mode]
    return arguments


def parse_append_reply(reply: object, turn_count: int) -> AppendReply:
    """Read the script's reply, whichever client decoded it."""
    if isinstance(reply, list) and len(reply) >= 2:
        outcome, created, *pairs = reply
        if isinstance(outcome, bytes):
            outcome = outcome.decode("ascii", "replace")
        if outcome in ("session_full", "not_a_session"):
            return AppendReply(str(outcome), False, (), ())
        if (
            outcome == "saved"
            and isinstance(created, int)
            and len(pairs) == 2 * turn_count
            and all(isinstance(item, int) for item in pairs)
        ):
            return AppendReply("saved", created == 1, tuple(pairs[0::2]), tuple(pairs[1::2]))
    raise StoreError("the store answered the append script with an unexpected reply")
