"""Client exceptions to memory errors: one table per backend, applied once at the store boundary.

A backend lists `ErrorRule`s, most specific first; `map_exceptions(table, endpoint)` wraps the
calls to its client, so that the first rule an exception matches decides both the error the
caller sees and whether the command may be sent again.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from memory.errors import (
    CorruptSessionError,
    SessionMemoryError,
    StoreError,
    StoreSettingsError,
    StoreUnavailableError,
)


@dataclass(frozen=True)
class Endpoint:
    """The store as errors name it, and the setting that points at it."""

    name: str  # "Redis" or "Upstash"
    location: str  # without credentials
    variable: str  # the environment variable to check

    @property
    def what(self) -> str:
        return f"{self.name} at {self.location}"


ErrorBuilder = Callable[[Exception, Endpoint], SessionMemoryError]


@dataclass(frozen=True)
class ErrorRule:
    """One row of a table: which exceptions it covers, what they become, whether to retry."""

    kind: type[Exception] | tuple[type[Exception], ...]
    error: ErrorBuilder
    when: Callable[[Exception], bool] = lambda exc: True
    # The command may not have reached the store: sending it again is safe.
    retry: bool = False


ErrorTable = Sequence[ErrorRule]


def rule_for(table: ErrorTable, exc: Exception) -> ErrorRule | None:
    """The first rule of `table` that covers `exc`, or None."""
    for rule in table:
        if isinstance(exc, rule.kind) and rule.when(exc):
            return rule
    return None


def translate(table: ErrorTable, exc: Exception, endpoint: Endpoint) -> SessionMemoryError | None:
    """The memory error `table` gives for `exc`, or None if no rule covers it."""
    rule = rule_for(table, exc)
    return None if rule is None else rule.error(exc, endpoint)


@contextmanager
def map_exceptions(table: ErrorTable, endpoint: Endpoint) -> Iterator[None]:
    """Raise the memory error for a client exception, chained to it; let others through."""
    try:
        yield
    except Exception as exc:
        error = translate(table, exc, endpoint)
        if error is None:
            raise
        raise error from exc


# -- conditions and errors the backends' tables share ------------------------------------------


def starts_with(*markers: str) -> Callable[[Exception], bool]:
    """The message starts with one of `markers` (Redis error replies open with a code word)."""
    return lambda exc: str(exc).upper().startswith(markers)


def contains(*markers: str) -> Callable[[Exception], bool]:
    """The message holds one of `markers` anywhere (for replies a proxy rewords)."""
    return lambda exc: any(marker in str(exc).upper() for marker in markers)


# Replies of a server that is up but cannot run commands just now; the command did not run.
BUSY_MARKERS = ("BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")
is_busy = starts_with(*BUSY_MARKERS)


def busy(exc: Exception, endpoint: Endpoint) -> StoreUnavailableError:
    return StoreUnavailableError(f"{endpoint.what} is busy ({str(exc).split()[0].upper()}); try again later")


def foreign_type(exc: Exception, endpoint: Endpoint) -> CorruptSessionError:
    return CorruptSessionError(
        "the session key holds a Redis type other than a string; it was left unchanged"
    )


def not_utf8(exc: Exception, endpoint: Endpoint) -> CorruptSessionError:
    return CorruptSessionError("the value stored at the session key is not UTF-8 text; it was left unchanged")


def refused(exc: Exception, endpoint: Endpoint) -> StoreError:
    return StoreError(f"{endpoint.name} refused the command: {exc}")


def unreachable(exc: Exception, endpoint: Endpoint) -> StoreError:
    """A connection that failed before the store answered: a setting to fix, or an outage."""
    for cause, error in _NETWORK_CAUSES:
        if find_cause(exc, cause) is not None:
            return error(endpoint)
    return StoreUnavailableError(f"could not reach {endpoint.what} ({type(exc).__name__}); try again later")


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


def _tls_failed(endpoint: Endpoint) -> StoreError:
    return StoreSettingsError(
        f"the TLS handshake with {endpoint.what} failed: check {endpoint.variable} (a TLS scheme needs "
        "a TLS port, a plain scheme a plain one) and that the server's certificate is trusted"
    )


def _not_resolved(endpoint: Endpoint) -> StoreError:
    return StoreUnavailableError(
        f"the host name of {endpoint.what} did not resolve: check {endpoint.variable} and the network; "
        "try again later"
    )


def _connection_refused(endpoint: Endpoint) -> StoreError:
    return StoreUnavailableError(
        f"{endpoint.what} refused the connection (nothing listening on that port?): check "
        f"{endpoint.variable} and that the server runs; try again later"
    )


def _too_slow(endpoint: Endpoint) -> StoreError:
    return StoreUnavailableError(f"{endpoint.what} did not answer in time; try again later")


# Looked for along the chain of causes: clients wrap these in exceptions of their own.
_NETWORK_CAUSES: tuple[tuple[type[BaseException], Callable[[Endpoint], StoreError]], ...] = (
    (ssl.SSLError, _tls_failed),
    (socket.gaierror, _not_resolved),
    (ConnectionRefusedError, _connection_refused),
    (TimeoutError, _too_slow),
)
