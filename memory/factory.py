"""Open the backend a `StoreConfig` names."""

from __future__ import annotations

from memory.config import StoreConfig
from memory.limits import Limits
from memory.redis_store import RedisStore
from memory.sqlite_store import SQLiteStore
from memory.store import SessionStore
from memory.upstash_store import UpstashStore


async def open_store(config: StoreConfig) -> SessionStore:
    """Open the store `config.backend` names; close it with `aclose()`."""
    limits = Limits.from_config(config)
    timeout, retries = config.store_timeout_seconds, config.store_retries
    match config.backend:
        case "upstash":
            url, token = config.upstash_redis_rest_url, config.upstash_redis_rest_token
            # The backend is Upstash only with both (the config's own check).
            assert url is not None
            assert token is not None
            return UpstashStore(url, token.get_secret_value(), limits, timeout, retries)
        case "redis":
            assert config.redis_url is not None  # the backend is Redis only with REDIS_URL
            return RedisStore(config.redis_url.get_secret_value(), limits, timeout, retries)
        case "sqlite":
            return await SQLiteStore.open(config.sqlite_path, limits, timeout)
