"""Memory-layer errors as tool errors the calling model can read, or as protocol errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS

from memory import (
    CorruptSessionError,
    DeleteOutdatedError,
    InvalidRequestError,
    InvalidSessionIdError,
    SessionDeletedError,
    SessionFullError,
    SessionIndexOffError,
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
    (SessionDeletedError, "Session deleted"),
    (DeleteOutdatedError, "Delete not applied"),
    (SessionIndexOffError, "Listing unavailable"),
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
    return ToolError(describe(error))


@contextmanager
def as_listing_errors() -> Iterator[None]:
    """For list_sessions: a refused cursor is invalid params (-32602), as a list method's cursor
    is; anything else becomes a ToolError the model reads."""
    try:
        yield
    except InvalidRequestError as exc:
        raise protocol_error(exc) from exc
    except SessionMemoryError as exc:
        raise tool_error(exc) from exc


@contextmanager
def as_protocol_errors() -> Iterator[None]:
    """Re-raise memory-layer errors as JSON-RPC errors, for resource reads and prompts."""
    try:
        yield
    except SessionMemoryError as exc:
        raise protocol_error(exc) from exc


def protocol_error(error: SessionMemoryError) -> MCPError:
    """Invalid params (-32602) for a bad request, internal error (-32603) for a store failure."""
    code = INVALID_PARAMS if isinstance(error, InvalidRequestError) else INTERNAL_ERROR
    return MCPError(code=code, message=describe(error))


def describe(error: SessionMemoryError) -> str:
    """A short heading, then the memory layer's detail (which never holds a secret)."""
    heading = next((text for kind, text in _HEADINGS if isinstance(error, kind)), "Store error")
    return f"{heading}: {error}"
