"""Short-term chat memory: sessions of turns in Upstash, Redis or an embedded SQLite file."""

from memory.clock import now_ms
from memory.config import Backend, StoreConfig
from memory.errors import (
    ConfigurationError,
    CorruptSessionError,
    InvalidRequestError,
    InvalidSessionIdError,
    SessionFullError,
    SessionMemoryError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
    TurnTooLargeError,
)
from memory.factory import open_store
from memory.keys import (
    MAX_SESSION_ID_CHARS,
    SESSION_ID_CONSTRAINTS,
    SESSION_ID_RULE,
    check_session_id,
    new_session_id,
    session_key,
)
from memory.models import MAX_SAFE_INTEGER, BatchSaveResult, ChatTurn, NewTurn, Role, SaveResult, TurnOutcome
from memory.planning import MAX_BATCH_TURNS
from memory.store import SessionStore

__all__ = [
    "MAX_BATCH_TURNS",
    "MAX_SAFE_INTEGER",
    "MAX_SESSION_ID_CHARS",
    "SESSION_ID_CONSTRAINTS",
    "SESSION_ID_RULE",
    "Backend",
    "BatchSaveResult",
    "ChatTurn",
    "ConfigurationError",
    "CorruptSessionError",
    "InvalidRequestError",
    "InvalidSessionIdError",
    "NewTurn",
    "Role",
    "SaveResult",
    "SessionFullError",
    "SessionMemoryError",
    "SessionStore",
    "StoreAuthError",
    "StoreConfig",
    "StoreError",
    "StoreSettingsError",
    "StoreUnavailableError",
    "TurnOutcome",
    "TurnTooLargeError",
    "check_session_id",
    "new_session_id",
    "now_ms",
    "open_store",
    "session_key",
]
