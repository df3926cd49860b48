"""A TCP proxy on loopback that puts a server at a network distance: every byte arrives late.

Each direction holds what it reads for `one_way_delay` seconds before passing it on, so a
request and its answer take twice that longer (the round-trip time), whatever their size.
Bytes keep their order; at most `max_chunks` reads of up to 64 KiB wait per direction (the
reader then waits too), and the proxy stops by itself `lifetime` seconds after it started
if `stop()` has not come first. It also counts round trips: a connection's client starting
to send again after the server has answered is one more.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from localservers.relay import Relay

_CHUNK = 64 * 1024


@dataclass
class DelayProxy(Relay):
    target_port: int
    one_way_delay: float = 0.0
    target_host: str = "127.0.0.1"
    lifetime: float = 3600.0
    max_chunks: int = 1024
    port: int = 0  # chosen by the system at start()
    round_trips: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.one_way_delay < 0:
            raise ValueError(f"one_way_delay must be 0 or more seconds, not {self.one_way_delay}")
        if self.lifetime <= 0:
            raise ValueError(f"lifetime must be more than 0 seconds, not {self.lifetime}")

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> DelayProxy:
        self._start_relay("delaying proxy", self.lifetime)
        return self

    def wait_stopped(self) -> None:
        """Block until the proxy has stopped (by `stop()` or at the end of its lifetime)."""
        if self._thread is not None:
            self._thread.join()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._open_upstream(writer)
        if upstream is None:
            return
        up_reader, up_writer = upstream
        # Which way the last bytes went on this connection: a turn to "up" after "down" is a round trip.
        last = ["down"]

        def seen(direction: str) -> None:
            if direction == "up" and last[0] == "down":
                self.round_trips += 1
            last[0] = direction

        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, lambda: seen("up")),
                self._pipe(up_reader, writer, lambda: seen("down")),
            )
        finally:
            for each in (writer, up_writer):
                self._connections.discard(each)
                each.transport.abort()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, on_data: Callable[[], None]
    ) -> None:
        """Copy `source` to `sink`, each read delivered `one_way_delay` after it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(self.max_chunks)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        if sink.can_write_eof():
                            sink.write_eof()
                    return
                sink.write(data)
                await sink.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while True:
                try:
                    data = await source.read(_CHUNK)
                except ConnectionError:
                    data = b""
                if data:
                    on_data()
                await queue.put((loop.time() + self.one_way_delay, data))
                if not data:
                    break
            await delivering
        except (ConnectionError, OSError):
            delivering.cancel()
        finally:
            if not delivering.done():
                delivering.cancel()


@contextmanager
def delayed(target_port: int, rtt_seconds: float, lifetime: float = 3600.0) -> Iterator[DelayProxy]:
    """A started proxy in front of 127.0.0.1:`target_port` adding `rtt_seconds` per round trip."""
    proxy = DelayProxy(target_port, one_way_delay=rtt_seconds / 2, lifetime=lifetime).start()
    try:
        yield proxy
    finally:
        proxy.stop()
