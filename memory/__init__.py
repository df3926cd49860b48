"""Short-term chat memory: sessions of turns in Upstash, Redis, PostgreSQL or an embedded SQLite file."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType

from memory.config import Backend, StoreConfig
from memory.errors import (
    ConfigurationError,
    CorruptSessionError,
    DeleteOutdatedError,
    InvalidRequestError,
    InvalidSessionIdError,
    SessionDeletedError,
    SessionFullError,
    SessionIndexOffError,
    SessionMemoryError,
    StoreAuthError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
    TurnTooLargeError,
)
from memory.models import (
    ID_PATTERN,
    ID_RULE,
    MAX_ID_CHARS,
    MAX_SAFE_INTEGER,
    BatchSaveResult,
    ChatTurn,
    NewTurn,
    PutOutcome,
    Role,
    SaveResult,
    SessionPage,
    SessionStore,
    SessionSummary,
    TurnOutcome,
)
from memory.rules import (
    MAX_BATCH_TURNS,
    MAX_SESSION_ID_CHARS,
    RETRY_WINDOW_BYTES,
    SESSION_ID_CONSTRAINTS,
    SESSION_ID_RULE,
    check_session_id,
    new_save_id,
    new_session_id,
    now_ms,
    session_key,
)

__all__ = [
    "ID_PATTERN",
    "ID_RULE",
    "MAX_BATCH_TURNS",
    "MAX_ID_CHARS",
    "MAX_SAFE_INTEGER",
    "MAX_SESSION_ID_CHARS",
    "RETRY_WINDOW_BYTES",
    "SESSION_ID_CONSTRAINTS",
    "SESSION_ID_RULE",
    "Backend",
    "BatchSaveResult",
    "ChatTurn",
    "ConfigurationError",
    "CorruptSessionError",
    "DeleteOutdatedError",
    "InvalidRequestError",
    "InvalidSessionIdError",
    "NewTurn",
    "PutOutcome",
    "Role",
    "SaveResult",
    "SessionDeletedError",
    "SessionFullError",
    "SessionIndexOffError",
    "SessionMemoryError",
    "SessionPage",
    "SessionStore",
    "SessionSummary",
    "StoreAuthError",
    "StoreConfig",
    "StoreError",
    "StoreSettingsError",
    "StoreUnavailableError",
    "TurnOutcome",
    "TurnTooLargeError",
    "check_session_id",
    "new_save_id",
    "new_session_id",
    "now_ms",
    "open_store",
    "session_key",
]


def open_store(config: StoreConfig) -> OpeningStore:
    """Open the store `config.backend` names: `async with open_store(config) as store:` closes it
    on the way out; `store = await open_store(config)` leaves closing (`aclose()`) to the caller."""
    return OpeningStore(config)


class OpeningStore:
    """A store being opened: await it for the store, or use it in `async with`."""

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._store: SessionStore | None = None

    def __await__(self) -> Generator[object, None, SessionStore]:
        return _open(self._config).__await__()

    async def __aenter__(self) -> SessionStore:
        self._store = await _open(self._config)
        return self._store

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._store is not None:
            await self._store.aclose()


async def _open(config: StoreConfig) -> SessionStore:
    # Imported here: only the chosen backend's client library is loaded.
    match config.backend:
        case "upstash":
            from memory.adapters import UpstashAdapter
            from memory.redis_store import RedisStore

            url, token = config.upstash_redis_rest_url, config.upstash_redis_rest_token
            # The backend is Upstash only with both (the config's own check).
            assert url is not None
            assert token is not None
            return RedisStore(config, UpstashAdapter(url, token.get_secret_value()))
        case "redis":
            from memory.adapters import RedisAdapter
            from memory.redis_store import RedisStore

            assert config.redis_url is not None  # the backend is Redis only with REDIS_URL
            url = config.redis_url.get_secret_value()
            if config.redis_cluster:
                from memory.cluster_adapter import RedisClusterAdapter

                return RedisStore(config, RedisClusterAdapter(url, config))
            return RedisStore(config, RedisAdapter(url, config))
        case "postgres":
            from memory.postgres_store import PostgresStore

            assert config.database_url is not None  # the backend is PostgreSQL only with DATABASE_URL
            return await PostgresStore.open(config, config.database_url.get_secret_value())
        case "sqlite":
            from memory.sqlite_store import SQLiteStore

            return await SQLiteStore.open(config)
