"""Command line entry point (placeholder until the MCP server lands)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("the MCP server is not built yet")
