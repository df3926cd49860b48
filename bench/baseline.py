"""The design note's saveTurn, for comparison only: read the whole session, append, write it all back.

Two round trips, the whole history over the wire twice, and a lost turn whenever two saves
to one session interleave. `command` sends one command through any client (redis-py, or the
upstash-redis SDK).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from memory import ChatTurn

Command = Callable[..., Awaitable[object]]


async def baseline_get_session(command: Command, key: str) -> list[dict[str, Any]]:
    value = await command("GET", key)
    return [] if value is None else list(json.loads(value))  # type: ignore[arg-type]


async def baseline_save_turn(command: Command, key: str, turn: ChatTurn, ttl_seconds: int = 604800) -> None:
    session = await baseline_get_session(command, key)
    session.append({"role": turn.role, "content": turn.content, "timestamp": turn.timestamp})
    text = json.dumps(session, ensure_ascii=False, separators=(",", ":"))
    await command("SET", key, text, "EX", ttl_seconds)
