"""Errors raised by the memory layer, and every message it words.

    SessionMemoryError
    ├── InvalidRequestError          the caller's input is wrong; nothing was stored
    │   ├── InvalidSessionIdError
    │   └── TurnTooLargeError
    ├── SessionFullError             the save would pass the session size limit
    ├── CorruptSessionError          the value at the key is not a session
    ├── ConfigurationError           the settings cannot work
    └── StoreError                   the store could not complete the request
        ├── StoreUnavailableError    an outage: unreachable, too slow, busy or locked; try again
        └── StoreSettingsError       a setting does not fit the store; fix it, retrying cannot help
            └── StoreAuthError       the store rejected the credentials

Messages never contain a token, a password or a URL with credentials: they are
shown to users and to the models that call the MCP tools. Below the classes, one function per
message that more than one place raises, so that each is worded once.
"""

from __future__ import annotations

from collections.abc import Sequence


class SessionMemoryError(Exception):
    """Base class of every error the memory layer raises on purpose."""


class InvalidRequestError(SessionMemoryError):
    """The request itself is invalid; retrying it unchanged cannot succeed."""


class InvalidSessionIdError(InvalidRequestError):
    """The session id breaks the documented rule."""


class TurnTooLargeError(InvalidRequestError):
    """The turn's content is longer than the configured maximum."""


class SessionFullError(SessionMemoryError):
    """Appending the turn would make the stored session larger than allowed."""


class DeleteOutdatedError(SessionMemoryError):
    """A save that began after the delete has landed: the delete deleted nothing."""


class SessionIndexOffError(SessionMemoryError):
    """Sessions cannot be listed: this server keeps no session index."""


class SessionDeletedError(SessionMemoryError):
    """The session was deleted after the save began; nothing was stored."""


class CorruptSessionError(SessionMemoryError):
    """The value stored at the session key is not a JSON array of turns."""


class ConfigurationError(SessionMemoryError):
    """The settings are incomplete or contradictory."""


class StoreError(SessionMemoryError):
    """The store could not complete the request."""


class StoreUnavailableError(StoreError):
    """The store could not be reached, answered too slowly, or is locked."""

    # For a save: its id, which a retry repeats so that the save is stored once, and the
    # timestamps it used.
    save_id: str | None = None
    timestamps: tuple[int, ...] = ()


class StoreSettingsError(StoreError):
    """The store answered in a way that shows a setting is wrong (TLS, endpoint, credentials)."""


class StoreAuthError(StoreSettingsError):
    """The store rejected the configured credentials."""


# -- what a save reports, on every backend -------------------------------------------------------


def session_full(session_id: str, max_session_bytes: int) -> SessionFullError:
    return SessionFullError(
        f"session {session_id!r} would exceed the maximum stored size of "
        f"{max_session_bytes} bytes; nothing was saved (start a new session or delete this one)"
    )


def deleted_during_save(session_id: str) -> SessionDeletedError:
    return SessionDeletedError(
        f"session {session_id!r} was deleted after this save began, so the save was not stored "
        "(a save under way when a session is deleted never brings it back); save again to start "
        "the session anew"
    )


def delete_outdated(session_id: str) -> DeleteOutdatedError:
    return DeleteOutdatedError(
        f"session {session_id!r} was saved to after this delete began, so nothing was deleted (a "
        "delete never erases a newer save's turns); delete it again to forget all of it"
    )


def index_off() -> SessionIndexOffError:
    return SessionIndexOffError(
        "this server keeps no session index (SESSION_INDEX=off), so it cannot list sessions; "
        "a session can still be read by its id"
    )


def invalid_cursor() -> InvalidRequestError:
    return InvalidRequestError(
        "the cursor is not one this server handed out for this list (it is malformed, altered, or "
        "from another client); start again without a cursor"
    )


def id_taken(turn_id: str, session_id: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"the id {turn_id!r} belongs to another turn of session {session_id!r} (other role or "
        "content); nothing was saved: give each new save its own id, and repeat an id only to "
        "retry the same save"
    )


def not_a_session(session_id: str) -> CorruptSessionError:
    return CorruptSessionError(
        f"the value stored for session {session_id!r} is not, at its ends, a JSON array of turns; "
        "it was left unchanged and nothing was saved"
    )


def corrupt(session_id: str, problem: str) -> CorruptSessionError:
    return CorruptSessionError(
        f"the value stored for session {session_id!r} is not a JSON array of turns: {problem}; "
        "it was left unchanged"
    )


def unavailable_during_save(
    error: StoreUnavailableError, save_id: str, timestamps: Sequence[int]
) -> StoreUnavailableError:
    """The error with what a caller needs to retry safely: the save's id (and its timestamps)."""
    wrapped = StoreUnavailableError(
        f'{error} (the save may have reached the store: retry the same call with id "{save_id}", '
        "so that it is stored once)"
    )
    wrapped.save_id = save_id
    wrapped.timestamps = tuple(timestamps)
    return wrapped


def too_slow(backend: str, seconds: float) -> StoreUnavailableError:
    return StoreUnavailableError(f"the {backend} store did not answer within {seconds:g} s; try again later")


# -- what a Redis-protocol server's failures mean (Redis over TCP, Upstash over HTTP) ------------


def foreign_type() -> CorruptSessionError:
    return CorruptSessionError(
        "the session key holds a Redis type other than a string; it was left unchanged"
    )


def not_utf8() -> CorruptSessionError:
    return CorruptSessionError("the value stored at the session key is not UTF-8 text; it was left unchanged")


def busy(what: str, reply: str) -> StoreUnavailableError:
    return StoreUnavailableError(f"{what} is busy ({reply.split()[0].upper()}); try again later")


def not_serving_every_slot(what: str, state: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"{what} is not serving all its slots (cluster_state:{state or 'unknown'}): a shard has no "
        "primary; try again later"
    )


def refused(name: str, reply: object) -> StoreError:
    return StoreError(f"{name} refused the command: {reply}")


def unexpected_reply(command: str, reply: object) -> StoreError:
    return StoreError(f"the store answered {command} with a {type(reply).__name__}")


def tls_failed(what: str, variable: str) -> StoreSettingsError:
    return StoreSettingsError(
        f"the TLS handshake with {what} failed: check {variable} (a TLS scheme needs "
        "a TLS port, a plain scheme a plain one) and that the server's certificate is trusted"
    )


def not_resolved(what: str, variable: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the host name of {what} did not resolve: check {variable} and the network; try again later"
    )


def connection_refused(what: str, variable: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"{what} refused the connection (nothing listening on that port?): check "
        f"{variable} and that the server runs; try again later"
    )


def no_answer(what: str) -> StoreUnavailableError:
    return StoreUnavailableError(f"{what} did not answer in time; try again later")


def unreachable(what: str, kind: str) -> StoreUnavailableError:
    return StoreUnavailableError(f"could not reach {what} ({kind}); try again later")


def plain_port(what: str, variable: str, plain_scheme: str) -> StoreSettingsError:
    return StoreSettingsError(
        f"{what} does not speak TLS on that port: set {variable} to a {plain_scheme} URL, "
        "or use the server's TLS port"
    )
