"""A minimal RESP2 connection: raw replies, with simple strings told apart from bulk strings."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass(frozen=True)
class SimpleString:
    text: str


class RespError(Exception):
    """An error reply (`-ERR ...`)."""


Reply = SimpleString | bytes | int | list["Reply | RespError"] | RespError | None


def encode_command(args: list[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RespConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> RespConnection:
        reader, writer = await asyncio.open_connection(host, port, limit=2**26)
        return cls(reader, writer)

    async def call(self, args: list[bytes]) -> Reply:
        """Send one command and return its reply; an error reply is returned, not raised."""
        self._writer.write(encode_command(args))
        await self._writer.drain()
        return await self._read()

    async def _read(self) -> Reply:
        line = await self._reader.readuntil(b"\r\n")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return SimpleString(rest.decode())
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = await self._reader.readexactly(length + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [await self._read() for _ in range(count)]
        raise ConnectionError(f"unexpected RESP reply type {kind!r}")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
