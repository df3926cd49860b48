"""A request checked and turned into what every backend runs: turns with timestamps and modes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from memory.clock import server_stamp
from memory.codec import turn_prefix
from memory.errors import InvalidRequestError, TurnTooLargeError
from memory.models import ChatTurn, NewTurn, Role

# A batch larger than this is refused: it would be one huge command and one long lock.
MAX_BATCH_TURNS = 100

# 'keep': the caller's timestamp, an equal stored turn is this one; 'move': the server's clock.
TurnMode = Literal["keep", "move"]


@dataclass(frozen=True)
class PlannedTurn:
    """A turn ready to append: its JSON up to the timestamp, the timestamp, the mode."""

    role: Role
    content: str
    prefix: str
    timestamp: int
    mode: TurnMode

    @property
    def text(self) -> str:
        """The turn as stored: JSON.stringify's layout."""
        return f"{self.prefix}{self.timestamp}}}"


def plan_turns(turns: Sequence[ChatTurn | NewTurn], max_content_chars: int) -> list[PlannedTurn]:
    """Check the turns and give each its timestamp and how an equal stored turn counts.

    A caller's timestamp makes an equal stored turn a retry ('keep'); the server's clock
    makes it another message, so the timestamp moves past it ('move').
    """
    if not turns:
        raise InvalidRequestError("there are no turns to save")
    if len(turns) > MAX_BATCH_TURNS:
        raise InvalidRequestError(f"{len(turns)} turns in one save; the maximum is {MAX_BATCH_TURNS}")
    planned = []
    for index, turn in enumerate(turns):
        if len(turn.content) > max_content_chars:
            which = f"turn {index}'s" if len(turns) > 1 else "the turn's"
            raise TurnTooLargeError(
                f"{which} content is {len(turn.content)} characters; the maximum is {max_content_chars}"
            )
        if turn.timestamp is None:
            planned.append(PlannedTurn(turn.role, turn.content, turn_prefix(turn), server_stamp(), "move"))
        else:
            planned.append(PlannedTurn(turn.role, turn.content, turn_prefix(turn), turn.timestamp, "keep"))
    return planned


# More turns than any session holds: a larger `last` means the whole session, and is cut to
# this so that it fits the stores' integers (GETRANGE offsets, SQLite's LIMIT).
_MOST_TURNS = 2**31 - 1


def check_last(last: int | None) -> int | None:
    """`last` as the stores use it: None for all, else at least 1 and at most any session's length."""
    if last is None:
        return None
    if isinstance(last, bool) or last < 1:
        raise InvalidRequestError(f"last must be at least 1 (got {last}); omit it for the whole session")
    return min(last, _MOST_TURNS)


def newest(turns: list[ChatTurn], last: int | None) -> list[ChatTurn]:
    return turns if last is None else turns[-last:]
