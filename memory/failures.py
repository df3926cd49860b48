"""Network failures on the way to a store, told apart: a setting to fix, or an outage to wait out."""

from __future__ import annotations

import socket
import ssl

import anyio

from memory.errors import StoreError, StoreSettingsError, StoreUnavailableError

PROBE_SECONDS = 1.0


def find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` in `exc`'s chain of causes, `exc` included."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def network_error(exc: BaseException, what: str, variable: str) -> StoreError | None:
    """The error for a connection that failed before the store answered, or None if it did not.

    `what` names the store and where it is (no credentials); `variable` is the setting to check.
    """
    if find_cause(exc, ssl.SSLError) is not None:
        return StoreSettingsError(
            f"the TLS handshake with {what} failed: check {variable} (a TLS scheme needs a TLS "
            "port, a plain scheme a plain one) and that the server's certificate is trusted"
        )
    if find_cause(exc, socket.gaierror) is not None:
        return StoreUnavailableError(
            f"the host name of {what} did not resolve: check {variable} and the network; try again later"
        )
    if find_cause(exc, ConnectionRefusedError) is not None:
        return StoreUnavailableError(
            f"{what} refused the connection (nothing listening on that port?): check {variable} and "
            "that the server runs; try again later"
        )
    if find_cause(exc, TimeoutError) is not None:
        return StoreUnavailableError(f"{what} did not answer in time; try again later")
    return None


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


def plain_endpoint_error(what: str, variable: str, plain_scheme: str) -> StoreSettingsError:
    return StoreSettingsError(
        f"{what} does not speak TLS on that port: set {variable} to a {plain_scheme} URL, "
        "or use the server's TLS port"
    )
