"""Memory-layer errors as tool errors the calling model can read and act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from memory import (
    CorruptSessionError,
    InvalidRequestError,
    InvalidSessionIdError,
    SessionFullError,
    SessionMemoryError,
    StoreAuthError,
    StoreSettingsError,
    StoreUnavailableError,
    TurnTooLargeError,
)

# Most specific first: the first match names the error. An outage's detail ends with "try
# again later" and a configuration problem's names the setting to fix, so headings say neither.
_HEADINGS: list[tuple[type[SessionMemoryError], str]] = [
    (InvalidSessionIdError, "Invalid session id"),
    (TurnTooLargeError, "Content too large"),
    (InvalidRequestError, "Invalid request"),
    (SessionFullError, "Session full"),
    (CorruptSessionError, "Not a session"),
    (StoreUnavailableError, "Store unavailable"),
    (StoreAuthError, "Store rejected the credentials (a server configuration problem)"),
    (StoreSettingsError, "Store misconfigured (a server configuration problem)"),
]


@contextmanager
def as_tool_errors() -> Iterator[None]:
    """Re-raise memory-layer errors as ToolErrors, so the model reads the message."""
    try:
        yield
    except SessionMemoryError as exc:
        raise tool_error(exc) from exc


def tool_error(error: SessionMemoryError) -> ToolError:
    """A ToolError whose message starts with a short heading, then the memory layer's detail."""
    heading = next((text for kind, text in _HEADINGS if isinstance(error, kind)), "Store error")
    return ToolError(f"{heading}: {error}")
