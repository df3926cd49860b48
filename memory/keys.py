"""Session ids and where a session lives in the store."""

from __future__ import annotations

import secrets
import unicodedata

from pydantic import StringConstraints

from memory.errors import InvalidSessionIdError

MAX_SESSION_ID_CHARS = 128
# The rule as a JSON Schema states it (the server publishes these constraints in its schemas):
# 1 to MAX_SESSION_ID_CHARS characters, none of them whitespace. JSON Schema has no portable
# way to name Unicode categories, so the unprintable ones below are refused by
# check_session_id alone; the schema never refuses an id that the check accepts.
SESSION_ID_PATTERN = r"^\S+$"
SESSION_ID_CONSTRAINTS = StringConstraints(
    min_length=1, max_length=MAX_SESSION_ID_CHARS, pattern=SESSION_ID_PATTERN
)
SESSION_ID_RULE = (
    f"a session id is 1 to {MAX_SESSION_ID_CHARS} printable characters "
    "with no whitespace (letters, digits, punctuation and symbols)"
)

# Control, format (zero-width), surrogate, private-use and unassigned code points:
# invisible or ambiguous in logs and keys.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def new_session_id() -> str:
    """A fresh opaque id: 128 random bits, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(16)


def check_session_id(session_id: str) -> str:
    """Return the id unchanged, or raise InvalidSessionIdError saying what is wrong."""
    if not session_id:
        raise InvalidSessionIdError(f"the session id is empty; {SESSION_ID_RULE}")
    if len(session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidSessionIdError(f"the session id is {len(session_id)} characters long; {SESSION_ID_RULE}")
    for position, char in enumerate(session_id):
        if char.isspace() or unicodedata.category(char) in _UNPRINTABLE_CATEGORIES:
            raise InvalidSessionIdError(
                f"the session id has a whitespace or unprintable character (U+{ord(char):04X}) "
                f"at position {position}; {SESSION_ID_RULE}"
            )
    return session_id


def session_key(key_prefix: str, session_id: str) -> str:
    """The key the design note uses, `session:{id}`, behind an optional prefix."""
    return f"{key_prefix}session:{session_id}"
