"""Short-term chat memory: sessions of turns in Upstash, Redis or an embedded SQLite file."""

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
from memory.factory import backend_name, open_store
from memory.keys import (
    MAX_SESSION_ID_CHARS,
    SESSION_ID_CONSTRAINTS,
    SESSION_ID_RULE,
    check_session_id,
    new_session_id,
    session_key,
)
from memory.models import MAX_SAFE_INTEGER, BatchSaveResult, ChatTurn, NewTurn, Role, SaveResult, TurnOutcome
from memory.rules import MAX_BATCH_TURNS, now_ms
from memory.settings import StoreSettings, describe_validation_error
from memory.store import SessionStore

__all__ = [
    "MAX_BATCH_TURNS",
    "MAX_SAFE_INTEGER",
    "MAX_SESSION_ID_CHARS",
    "SESSION_ID_CONSTRAINTS",
    "SESSION_ID_RULE",
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
    "StoreError",
    "StoreSettings",
    "StoreSettingsError",
    "StoreUnavailableError",
    "TurnOutcome",
    "TurnTooLargeError",
    "backend_name",
    "check_session_id",
    "describe_validation_error",
    "new_session_id",
    "now_ms",
    "open_store",
    "session_key",
]
