"""Which store view serves the current request: the shared key space, or the client's own.

In `per-client` mode a session key carries the authenticated client's name:
`{KEY_PREFIX}client:{name}:session:{id}`. Names are percent-encoded (every character but
letters, digits, `_`, `.`, `-` and `~`), so any JWT subject makes a key of its own and no
name can reach into another's key space; a tokens-file name is unchanged by it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_REQUEST

from memory import SessionStore
from server.settings import Isolation

StoreLookup = Callable[[], SessionStore]


def client_namespace(client_name: str) -> str:
    return f"client:{quote(client_name, safe='')}:"


def store_lookup(store: SessionStore, isolation: Isolation) -> StoreLookup:
    """A function giving the store the current request may use; every tool and resource calls it."""
    if isolation == "shared":
        return lambda: store

    def current() -> SessionStore:
        access = get_access_token()
        if access is None:
            # Startup refuses per-client mode without authentication; this guards the rest.
            raise MCPError(code=INVALID_REQUEST, message="per-client isolation needs an authenticated client")
        # A view is a few fields over the open store, which keeps the one housekeeping schedule.
        return store.view(client_namespace(access.client_id))

    return current
