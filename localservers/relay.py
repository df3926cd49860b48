"""What every loopback TCP relay here does, whatever it does to the bytes: listen on its own event
loop in a thread, accept a client, open the connection to the server behind it, and on stop
abort every connection it holds."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod


class Relay(ABC):
    """A mixin for the proxies' dataclasses, which give it these fields."""

    target_host: str
    target_port: int
    port: int  # 0 until started: the system chooses one
    _connections: set[asyncio.StreamWriter]
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None

    def _start_relay(self, name: str, lifetime: float | None = None) -> None:
        """Listen on 127.0.0.1 in a thread of its own, stopping by itself after `lifetime` seconds
        when given; raise if the port cannot be had."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self.port = server.sockets[0].getsockname()[1]
            if lifetime is not None:
                loop.call_later(lifetime, loop.stop)
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown(server))
            loop.close()

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"the {name} could not listen: {failure[0]}")

    def stop(self) -> None:
        """Close the listener and every connection; idempotent, and harmless once it stopped itself."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed itself
                loop.call_soon_threadsafe(loop.stop)
            thread.join()
        self._thread = None

    @abstractmethod
    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None: ...

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A stop cancels the connections still open: that ends them, and is no error.
        with contextlib.suppress(asyncio.CancelledError):
            await self._relay(reader, writer)

    async def _open_upstream(
        self, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The connection to the server for the client on `writer`; None (the client cut) if
        the server does not accept it."""
        self._connections.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._connections.discard(writer)
            writer.transport.abort()
            return None
        self._connections.add(up_writer)
        return up_reader, up_writer

    async def _shutdown(self, server: asyncio.Server) -> None:
        server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
