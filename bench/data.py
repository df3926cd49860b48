"""The turns every benchmark stores: about 500 bytes each, written as JSON.stringify writes them."""

from __future__ import annotations

import json

from memory import ChatTurn, Role

# About 500 bytes of text per turn, with the quotes and newlines real messages have.
CONTENT = ('The user said "hello" and asked about the weather.\n' * 10)[:490]
TTL_SECONDS = 604800
FIRST_TIMESTAMP = 1_732_540_000_000
# After every filler turn and before now, as a client's clock gives it: a timestamp from the future
# would make each save also read the session's deletion marker (see docs/storage.md, Deletes).
NEW_TIMESTAMP = 1_760_000_000_000


def filler_turns(count: int, first_timestamp: int = FIRST_TIMESTAMP) -> list[ChatTurn]:
    roles: tuple[Role, Role] = ("user", "assistant")
    return [
        ChatTurn(role=roles[i % 2], content=f"{i}: {CONTENT}", timestamp=first_timestamp + i)
        for i in range(count)
    ]


def new_turns(serial: int, count: int) -> list[ChatTurn]:
    """`count` turns no session holds yet (a question, then its answer), numbered by `serial`."""
    roles: tuple[Role, Role] = ("user", "assistant")
    return [
        ChatTurn(
            role=roles[i % 2],
            content=f"new {serial}.{i}: {CONTENT}",
            timestamp=NEW_TIMESTAMP + 2 * serial + i,
        )
        for i in range(count)
    ]


def turn_json(turn: ChatTurn) -> str:
    """One turn as JSON.stringify writes it (same key order, no spaces, non-ASCII kept)."""
    fields = {"role": turn.role, "content": turn.content, "timestamp": turn.timestamp}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def session_json(turns: list[ChatTurn]) -> str:
    return "[" + ",".join(turn_json(turn) for turn in turns) + "]"
