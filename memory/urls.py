"""Store URLs as they may be shown in errors and logs: no user name, password or query."""

from __future__ import annotations

import httpx


def redact_url(url: str) -> str:
    """Scheme, host, port and path only: `redis://[::1]:6379/0`, `unix:///run/redis.sock`.

    The query goes too: redis-py reads a `password=` option from it.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        # Never fall back to the text itself: the unparsable part may be the password.
        return "(a URL that could not be parsed)"
    # `netloc` brackets an IPv6 host and leaves the user name and password out.
    host = parsed.netloc.decode("ascii")
    path = "" if parsed.path == "/" else parsed.path  # httpx gives "/" for a URL with no path
    return f"{parsed.scheme}://{host}{path}"
