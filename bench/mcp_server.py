"""The real server plus a no-op tool, the floor the SDK allows; run by the MCP benchmark."""

from __future__ import annotations

import argparse
import logging

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from memory import SessionStore, open_store
from server.app import build_http_app, build_server
from server.cli import configure_logging
from server.settings import Settings


def add_noop_tool(server: MCPServer) -> None:
    async def noop() -> str:
        return "ok"

    server.add_tool(noop, description="Does nothing.", annotations=ToolAnnotations(read_only_hint=True))


def bench_server(store: SessionStore, settings: Settings) -> MCPServer:
    server = build_server(store, settings)
    add_noop_tool(server)
    return server


async def serve(transport: str, port: int) -> None:
    settings = Settings()
    store = await open_store(settings)
    try:
        server = bench_server(store, settings)
        if transport == "stdio":
            await server.run_stdio_async()
            return
        app = build_http_app(server, settings, "127.0.0.1")
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
        await uvicorn.Server(config).serve()
    finally:
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    configure_logging(logging.getLevelName(logging.WARNING))
    anyio.run(serve, args.transport, args.port)


if __name__ == "__main__":
    main()
