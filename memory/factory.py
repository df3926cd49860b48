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
    """Open the store `backend_name(settings)` names; close it with `aclose()`."""
    limits = Limits.from_settings(settings)
    timeout, retries = settings.store_timeout_seconds, settings.store_retries
    url, token = settings.upstash_redis_rest_url, settings.upstash_redis_rest_token
    if url is not None and token is not None:
        return UpstashStore(url, token.get_secret_value(), limits, timeout, retries)
    if settings.redis_url is not None:
        return RedisStore(settings.redis_url.get_secret_value(), limits, timeout, retries)
    return await SQLiteStore.open(settings.sqlite_path, limits, timeout)
