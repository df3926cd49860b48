"""What every loopback TCP relay here does, whatever it does to the bytes: accept a client, open
the connection to the server behind it, and on stop abort every connection it holds."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class Relay(ABC):
    """A mixin for the proxies' dataclasses, which give it these three fields."""

    target_host: str
    target_port: int
    _connections: set[asyncio.StreamWriter]

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
