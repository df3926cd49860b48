"""The real console script plus a no-op tool, the floor the SDK allows; run by the MCP benchmark.

It takes the console script's flags and serves through the same code (`server.cli.main`), so
the benchmark measures what users run; only its log level defaults to WARNING.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from memory import SessionStore
from server import cli
from server.app import HttpAuth, build_server
from server.settings import Settings


def add_noop_tool(server: MCPServer) -> None:
    async def noop() -> str:
        return "ok"

    server.add_tool(noop, description="Does nothing.", annotations=ToolAnnotations(read_only_hint=True))


def bench_server(store: SessionStore, settings: Settings, *, auth: HttpAuth | None = None) -> MCPServer:
    server = build_server(store, settings, auth=auth)
    add_noop_tool(server)
    return server


def main() -> None:
    cli.main(["--log-level", "WARNING", *sys.argv[1:]], build=bench_server)


if __name__ == "__main__":
    main()
