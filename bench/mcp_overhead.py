"""Benchmark 3: what the MCP layer adds to a store call, per transport, next to a no-op tool."""

from __future__ import annotations

import functools
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from bench.environment import BenchEnvironment
from bench.mcp_server import bench_server
from bench.stats import median_ms, p99_ms, timed
from localservers.processes import serving_http
from localservers.redis_server import free_port
from memory import ChatTurn, open_store

REPO = Path(__file__).resolve().parent.parent


@dataclass
class CallLatency:
    transport: str
    call: str
    median_ms: float
    p99_ms: float


@dataclass
class Throughput:
    clients: int
    calls: int
    seconds: float

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds


def _checked(result: CallToolResult) -> CallToolResult:
    if result.is_error:
        raise RuntimeError(f"tool call failed: {result.content}")
    return result


async def _latencies(client: Client, transport: str, calls: int) -> list[CallLatency]:
    session = f"mcp-{uuid.uuid4().hex[:8]}"
    for i in range(20):
        await client.call_tool("save_turn", {"session_id": session, "role": "user", "content": f"turn {i}"})
    plans: dict[str, tuple[str, dict[str, Any]]] = {
        "no-op tool": ("noop", {}),
        "save_turn": ("save_turn", {"session_id": f"{session}-w", "role": "user", "content": "hello"}),
        "get_session (20 turns)": ("get_session", {"session_id": session}),
    }
    results = []
    for label, (tool, arguments) in plans.items():
        durations = []
        for i in range(calls):
            call_arguments = arguments | ({"timestamp": i} if tool == "save_turn" else {})
            durations.append(await timed(functools.partial(_call, client, tool, call_arguments)))
        results.append(CallLatency(transport, label, median_ms(durations), p99_ms(durations)))
    return results


async def _call(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    return _checked(await client.call_tool(tool, arguments))


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


async def mcp_latency(env: BenchEnvironment, calls: int) -> list[CallLatency]:
    """Median and p99 per call: the store alone, then in memory, stdio and HTTP, each with a no-op floor."""
    settings = env.settings("upstash")
    store = await open_store(settings)
    results: list[CallLatency] = []
    try:
        session = f"direct-{uuid.uuid4().hex[:8]}"
        for i in range(20):
            await store.save_turn(session, ChatTurn(role="user", content=f"turn {i}", timestamp=i))
        new_turns = [ChatTurn(role="user", content="hello", timestamp=i) for i in range(calls)]
        saves = [await timed(functools.partial(store.save_turn, f"{session}-w", turn)) for turn in new_turns]
        reads = [await timed(functools.partial(store.get_session, session)) for _ in range(calls)]
        results.append(CallLatency("store alone", "save_turn", median_ms(saves), p99_ms(saves)))
        results.append(CallLatency("store alone", "get_session (20 turns)", median_ms(reads), p99_ms(reads)))

        async with Client(bench_server(store, settings)) as client:
            results += await _latencies(client, "in memory", calls)
    finally:
        await store.aclose()

    stdio: AbstractAsyncContextManager[Client] = Client(
        StdioServerParameters(
            command=sys.executable, args=["-m", "bench.mcp_server"], env=_child_env(env), cwd=env.workdir
        )
    )
    async with stdio as client:
        results += await _latencies(client, "stdio", calls)
    with _http_server(env) as url:
        async with _http_client(url) as client:
            results += await _latencies(client, "streamable HTTP", calls)
    return results


async def http_throughput(
    env: BenchEnvironment, client_counts: tuple[int, ...], calls_per_client: int
) -> list[Throughput]:
    """save_turn calls per second over HTTP with several clients at once, each on its own session."""
    results = []
    with _http_server(env) as url:
        for clients in client_counts:

            async def run_client(index: int, clients: int = clients) -> None:
                async with _http_client(url) as client:
                    for i in range(calls_per_client):
                        arguments = {
                            "session_id": f"tp-{clients}-{index}",
                            "role": "user",
                            "content": f"m{i}",
                        }
                        await _call(client, "save_turn", arguments)

            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for index in range(clients):
                    group.start_soon(run_client, index)
            results.append(Throughput(clients, clients * calls_per_client, time.perf_counter() - started))
    return results
