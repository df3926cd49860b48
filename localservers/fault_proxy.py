"""A TCP proxy in front of a Redis-protocol server that misbehaves at random, per chunk sent.

Each chunk a client sends may, as `Chaos` draws it:

- `stall`: be held `stall_seconds` (past the client's deadline), then forwarded: the command
  runs late, perhaps after the client gave up and retried;
- `reset_before`: be dropped, and the client's connection reset: the command never runs;
- `reset_after`: be forwarded, then the client's connection reset: the command runs, its answer
  is lost.

What was forwarded always reaches the server: the upstream side is closed gently (FIN), after
everything held has been written, so a held command still runs when its client has left.
Answers pass through untouched. `held` counts chunks held or being forwarded now, so a caller
can wait for late executions to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from localservers.chaos import Chaos
from localservers.relay import Relay

_CHUNK = 64 * 1024
PROXY_KINDS = ("stall", "reset_before", "reset_after")
# After a reset_after's bytes are written, how long before the client's side is cut: long
# enough for the server to have read them, whatever it then does with the answer.
_RESET_AFTER_SECONDS = 0.02


@dataclass
class FaultProxy(Relay):
    target_port: int
    chaos: Chaos
    stall_seconds: tuple[float, float] = (1.0, 3.0)
    target_host: str = "127.0.0.1"
    port: int = 0  # chosen by the system at start()
    held: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)

    def start(self) -> FaultProxy:
        self._start_relay("fault proxy")
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._open_upstream(writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        # Set by a reset_after: the server's answers are no longer passed on.
        muted = asyncio.Event()
        up = asyncio.ensure_future(self._forward(reader, up_writer, writer, muted))
        down = asyncio.ensure_future(self._answer(up_reader, writer, muted))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if down.done():  # the server went away: nothing held can reach it now
                up.cancel()
                writer.transport.abort()
            else:
                # Closed gently, so the server still reads and runs what was forwarded.
                with contextlib.suppress(OSError):
                    up_writer.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(down), 10)
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            for each in (writer, up_writer):
                self._connections.discard(each)
                each.transport.abort()

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        writer: asyncio.StreamWriter,
        muted: asyncio.Event,
    ) -> None:
        while True:
            try:
                data = await reader.read(_CHUNK)
            except ConnectionError:
                return
            if not data:
                return
            kind = self.chaos.draw()
            if kind == "reset_before":
                self.chaos.record(kind)
                writer.transport.abort()
                return
            self.held += 1
            try:
                if kind == "stall":
                    seconds = self.chaos.uniform(*self.stall_seconds)
                    self.chaos.record(kind, f"{seconds:.2f} s")
                    await asyncio.sleep(seconds)
                if kind == "reset_after":
                    muted.set()
                up_writer.write(data)
                await up_writer.drain()
                if kind == "reset_after":
                    self.chaos.record(kind)
                    await asyncio.sleep(_RESET_AFTER_SECONDS)
                    writer.transport.abort()
                    return
            except (ConnectionError, OSError):
                return
            finally:
                self.held -= 1

    async def _answer(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, muted: asyncio.Event
    ) -> None:
        """Copy the server's answers to the client until the server closes, even with the client gone."""
        while True:
            try:
                data = await up_reader.read(_CHUNK)
            except ConnectionError:
                return
            if not data:
                return
            if not muted.is_set() and not writer.transport.is_closing():
                writer.write(data)
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
