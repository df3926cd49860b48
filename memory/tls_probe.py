"""Telling a TLS URL aimed at a plain-text port from an outage: ask the port in plain text."""

from __future__ import annotations

import anyio

from memory.errors import StoreSettingsError
from memory.exception_map import Endpoint

PROBE_SECONDS = 1.0


async def answers_in_plain(host: str, port: int, greeting: bytes, reply_prefixes: tuple[bytes, ...]) -> bool:
    """True if the endpoint answers `greeting` sent without TLS: a TLS URL aimed at a plain port."""
    try:
        with anyio.fail_after(PROBE_SECONDS):
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(greeting)
                reply = await stream.receive(64)
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False
    return reply.startswith(reply_prefixes)


def plain_endpoint_error(endpoint: Endpoint, plain_scheme: str) -> StoreSettingsError:
    return StoreSettingsError(
        f"{endpoint.what} does not speak TLS on that port: set {endpoint.variable} to a {plain_scheme} URL, "
        "or use the server's TLS port"
    )
