"""Errors raised by the memory layer.

    SessionMemoryError
    ├── InvalidRequestError          the caller's input is wrong; nothing was stored
    │   ├── InvalidSessionIdError
    │   └── TurnTooLargeError
    ├── SessionFullError             the save would pass the session size limit
    ├── CorruptSessionError          the value at the key is not a session
    ├── ConfigurationError           the settings cannot work
    └── StoreError                   the store could not complete the request
        ├── StoreUnavailableError    an outage: unreachable, too slow, busy or locked; try again
        └── StoreSettingsError       a setting does not fit the store; fix it, retrying cannot help
            └── StoreAuthError       the store rejected the credentials

Messages never contain a token, a password or a URL with credentials: they are
shown to users and to the models that call the MCP tools.
"""

from __future__ import annotations


class SessionMemoryError(Exception):
    """Base class of every error the memory layer raises on purpose."""


class InvalidRequestError(SessionMemoryError):
    """The request itself is invalid; retrying it unchanged cannot succeed."""


class InvalidSessionIdError(InvalidRequestError):
    """The session id breaks the documented rule."""


class TurnTooLargeError(InvalidRequestError):
    """The turn's content is longer than the configured maximum."""


class SessionFullError(SessionMemoryError):
    """Appending the turn would make the stored session larger than allowed."""


class CorruptSessionError(SessionMemoryError):
    """The value stored at the session key is not a JSON array of turns."""


class ConfigurationError(SessionMemoryError):
    """The settings are incomplete or contradictory."""


class StoreError(SessionMemoryError):
    """The store could not complete the request."""


class StoreUnavailableError(StoreError):
    """The store could not be reached, answered too slowly, or is locked."""

    # For a save: the timestamps it used, so that the caller can retry it safely.
    timestamps: tuple[int, ...] = ()


class StoreSettingsError(StoreError):
    """The store answered in a way that shows a setting is wrong (TLS, endpoint, credentials)."""


class StoreAuthError(StoreSettingsError):
    """The store rejected the configured credentials."""
