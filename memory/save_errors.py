"""The errors a save reports, worded once for every backend."""

from __future__ import annotations

from collections.abc import Sequence

from memory.errors import CorruptSessionError, SessionFullError, StoreUnavailableError
from memory.limits import Limits
from memory.planning import PlannedTurn


def session_full(session_id: str, limits: Limits) -> SessionFullError:
    return SessionFullError(
        f"session {session_id!r} would exceed the maximum stored size of "
        f"{limits.max_session_bytes} bytes; nothing was saved (start a new session or delete this one)"
    )


def not_a_session(session_id: str) -> CorruptSessionError:
    return CorruptSessionError(
        f"the value stored for session {session_id!r} is not, at its ends, a JSON array of turns; "
        "it was left unchanged and nothing was saved"
    )


def unavailable_during_save(
    error: StoreUnavailableError, planned: Sequence[PlannedTurn]
) -> StoreUnavailableError:
    """The error with what a caller needs to retry safely: the timestamps this save used."""
    stamps = ", ".join(str(turn.timestamp) for turn in planned)
    which = "timestamp" if len(planned) == 1 else "timestamps (in order)"
    wrapped = StoreUnavailableError(
        f"{error} (the save may have reached the store: retry with {which} {stamps}, "
        "so that it is not stored twice)"
    )
    wrapped.timestamps = tuple(turn.timestamp for turn in planned)
    return wrapped
