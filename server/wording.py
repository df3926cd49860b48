"""Phrases the calling model reads in both the tools' descriptions and the prompts."""

from __future__ import annotations

DAY_SECONDS = 86_400


def ttl_words(seconds: int) -> str:
    """How long a session lasts, in words: whole days as days, anything else in seconds."""
    days, rest = divmod(seconds, DAY_SECONDS)
    if days and not rest:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
