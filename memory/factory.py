"""Pick and open the backend the settings ask for."""

from __future__ import annotations

from memory.redis_store import RedisStore
from memory.rules import Limits
from memory.settings import StoreSettings
from memory.sqlite_store import SQLiteStore
from memory.store import SessionStore
from memory.upstash_store import UpstashStore


def backend_name(settings: StoreSettings) -> str:
    """Upstash when its URL and token are set, else Redis when REDIS_URL is set, else SQLite."""
    if settings.upstash_redis_rest_url is not None:
        return "upstash"
    if settings.redis_url is not None:
        return "redis"
    return "sqlite"


async def open_store(settings: StoreSettings) -> SessionStore:
    """Open the store the settings select; close it with `aclose()`."""
    limits = Limits.from_settings(settings)
    timeout = settings.store_timeout_seconds
    match backend_name(settings):
        case "upstash":
            assert settings.upstash_redis_rest_url and settings.upstash_redis_rest_token  # checked by the settings
            return UpstashStore(
                settings.upstash_redis_rest_url,
                settings.upstash_redis_rest_token.get_secret_value(),
                limits,
                timeout,
                settings.store_retries,
            )
        case "redis":
            assert settings.redis_url
            return RedisStore(settings.redis_url.get_secret_value(), limits, timeout, settings.store_retries)
        case _:
            return await SQLiteStore.open(settings.sqlite_path, limits, timeout)
