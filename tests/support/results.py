"""A tool call's result as tests read it."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a call that succeeded."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """The text of a call that failed."""
    assert result.is_error, result.structured_content
    assert isinstance(result.content[0], TextContent)
    return result.content[0].text
