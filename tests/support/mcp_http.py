"""An MCP client over streamable HTTP with a bearer token, and plain JSON-RPC posts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def mcp_client(base_url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client,
    ):
        yield client


def post_list_tools(base_url: str, token: str | None, **headers: str) -> httpx.Response:
    """One tools/list request, with `token` as bearer (none if None)."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    return httpx.post(
        f"{base_url}/mcp",
        json=body,
        headers={"Accept": "application/json, text/event-stream"} | headers,
        timeout=10,
    )
