"""The key layout, TTL and size limits a store is opened with."""

from __future__ import annotations

from dataclasses import dataclass

from memory.clock import now_ms
from memory.config import StoreConfig
from memory.keys import check_session_id, session_key


@dataclass(frozen=True)
class Limits:
    """The key layout, TTL and size limits taken from the config."""

    key_prefix: str
    ttl_seconds: int
    max_content_chars: int
    max_session_bytes: int

    @classmethod
    def from_config(cls, config: StoreConfig) -> Limits:
        return cls(
            key_prefix=config.key_prefix,
            ttl_seconds=config.session_ttl_seconds,
            max_content_chars=config.max_content_chars,
            max_session_bytes=config.max_session_bytes,
        )

    def key_for(self, session_id: str) -> str:
        return session_key(self.key_prefix, check_session_id(session_id))

    def expires_at(self, now: int | None = None) -> int:
        return (now_ms() if now is None else now) + self.ttl_seconds * 1000
