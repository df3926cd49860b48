"""MCP over stdio that stops at once on a signal, even with a terminal on standard input.

The SDK reads stdin in a worker thread that cannot be interrupted: with a terminal on stdin,
a stop waits for the next line (Enter or Ctrl-D). Here a daemon thread reads instead, so
cancelling the server leaves that read behind and the process exits at once.
"""

from __future__ import annotations

import codecs
import os
import sys
import threading
from collections.abc import AsyncIterator

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

_CHUNK_BYTES = 65536


class _StdinLines(anyio.AsyncFile[str]):
    """Lines of standard input, as the SDK's transport iterates them."""

    def __init__(self) -> None:
        super().__init__(sys.stdin)

    async def __aiter__(self) -> AsyncIterator[str]:
        send, receive = anyio.create_memory_object_stream[str]()
        token = anyio.lowlevel.current_token()
        threading.Thread(
            target=_read_lines, args=(sys.stdin.fileno(), send, token), name="stdin reader", daemon=True
        ).start()
        async with receive:
            async for line in receive:
                yield line


def _read_lines(fd: int, send: ObjectSendStream[str], token: anyio.lowlevel.EventLoopToken) -> None:
    # Raw os.read, not sys.stdin: a daemon thread blocked inside a buffered reader holds its
    # lock, and the interpreter aborts at exit when it cannot take that lock.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    try:
        while chunk := os.read(fd, _CHUNK_BYTES):
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            for line in lines:
                anyio.from_thread.run(send.send, line + "\n", token=token)
        pending += decoder.decode(b"", final=True)
        if pending:
            anyio.from_thread.run(send.send, pending, token=token)
        anyio.from_thread.run(send.aclose, token=token)
    except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.RunFinishedError):
        # The server stopped (or stdin went away) first: nobody is left to read these lines.
        return


async def run_stdio(server: MCPServer) -> None:
    """What `server.run_stdio_async()` does, with a standard input that never delays a stop."""
    lowlevel = server._lowlevel_server  # the SDK's own stdio runner reaches it the same way
    async with stdio_server(stdin=_StdinLines()) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
