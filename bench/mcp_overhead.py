"""What the MCP layer adds to a store call, per transport: each tool against its no-op twin.

For `get_session` of 20 turns and `save_turn`, three figures per transport, interleaved one of
each per round: the store call alone (in this process), the no-op twin (the same tool over a
store that does nothing, returning a result of the same size), and the real tool. The real
tool should cost no more than the two others added together.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from bench.data import CONTENT, NEW_TIMESTAMP, filler_turns
from bench.environment import BenchEnvironment
from bench.mcp_server import NOOP_PREFIX, NOOP_SESSION_TURNS, bench_server
from localservers.processes import serving_http
from localservers.redis_server import free_port
from memory import NewTurn, SessionStore, open_store

REPO = Path(__file__).resolve().parent.parent
GET_SESSION = f"get_session ({NOOP_SESSION_TURNS} turns)"
SAVE_TURN = "save_turn"


@dataclass
class ToolOverhead:
    transport: str
    call: str
    store_ms: float
    noop_ms: float
    tool_ms: float

    @property
    def ratio(self) -> float:
        return self.tool_ms / (self.noop_ms + self.store_ms)


def _checked(result: CallToolResult) -> CallToolResult:
    if result.is_error:
        raise RuntimeError(f"tool call failed: {result.content}")
    return result


async def _ms(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def _overheads(client: Client, store: SessionStore, transport: str, calls: int) -> list[ToolOverhead]:
    run = uuid.uuid4().hex[:8]
    read_id = f"mcp-{run}"
    # Read by the real tool, and what the no-op twin answers: the same turns.
    await store.save_turns(read_id, filler_turns(NOOP_SESSION_TURNS))

    def save_arguments(i: int, who: str) -> dict[str, Any]:
        return {
            "session_id": f"w{who}-{run}",
            "role": "user",
            "content": CONTENT,
            "timestamp": NEW_TIMESTAMP + i,
        }

    async def tool(name: str, arguments: dict[str, Any]) -> None:
        _checked(await client.call_tool(name, arguments))

    timings: dict[tuple[str, str], list[float]] = {}

    def record(call: str, kind: str, ms: float) -> None:
        timings.setdefault((call, kind), []).append(ms)

    read = {"session_id": read_id}
    for i in range(calls):
        record(GET_SESSION, "store", await _ms(lambda: store.get_session(read_id)))
        record(GET_SESSION, "noop", await _ms(lambda: tool(NOOP_PREFIX + "get_session", read)))
        record(GET_SESSION, "tool", await _ms(lambda: tool("get_session", read)))
        turn = NewTurn(role="user", content=CONTENT, timestamp=NEW_TIMESTAMP + i)
        record(SAVE_TURN, "store", await _ms(functools.partial(store.save_turn, f"ws-{run}", turn)))
        noop_save = functools.partial(tool, NOOP_PREFIX + "save_turn", save_arguments(i, "n"))
        record(SAVE_TURN, "noop", await _ms(noop_save))
        record(SAVE_TURN, "tool", await _ms(functools.partial(tool, "save_turn", save_arguments(i, "t"))))
    medians = {key: statistics.median(values) for key, values in timings.items()}
    return [
        ToolOverhead(transport, call, medians[call, "store"], medians[call, "noop"], medians[call, "tool"])
        for call in (GET_SESSION, SAVE_TURN)
    ]


def _child_env(env: BenchEnvironment) -> dict[str, str]:
    # HOME and the working directory in the scratch directory: no developer's .env is read.
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(env.workdir)}
    return base | env.upstash_env()


@contextmanager
def _http_server(env: BenchEnvironment) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.mcp_server", "--transport", "http", "--port", str(port)]
    with serving_http(command, port, _child_env(env), cwd=env.workdir) as base_url:
        yield f"{base_url}/mcp"


@asynccontextmanager
async def _http_client(url: str) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient() as http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def mcp_overhead(env: BenchEnvironment, calls: int) -> list[ToolOverhead]:
    """In memory, over stdio and over streamable HTTP, each server on the Upstash gateway."""
    settings = env.settings("upstash")
    store = await open_store(settings)
    results: list[ToolOverhead] = []
    try:
        async with Client(bench_server(store, settings)) as client:
            results += await _overheads(client, store, "in memory", calls)
        stdio: AbstractAsyncContextManager[Client] = Client(
            StdioServerParameters(
                command=sys.executable, args=["-m", "bench.mcp_server"], env=_child_env(env), cwd=env.workdir
            )
        )
        async with stdio as client:
            results += await _overheads(client, store, "stdio", calls)
        with _http_server(env) as url:
            async with _http_client(url) as client:
                results += await _overheads(client, store, "streamable HTTP", calls)
    finally:
        await store.aclose()
    return results
