"""Checks in front of the MCP app: Host and Origin (DNS rebinding), and no idle event streams."""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)
# Bind addresses that listen on every interface ("" too, to asyncio); compared against, not bound.
WILDCARD_BINDS = ("0.0.0.0", "::", "")  # noqa: S104
# /healthz answers load balancers that address the server by any name or IP.
UNCHECKED_PATHS = ("/healthz",)


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, str | None] | None:
    """(name, port) of a Host header or host[:port] entry: lower case, no trailing dot; None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    else:
        name, colon, port_text = value.rpartition(":")
        if not colon or ":" in name:  # no port, or a bare IPv6 address
            name, port = value, None
        else:
            port = port_text
    name = name.rstrip(".")
    if not name or (port is not None and not (port == "*" or port.isdigit())):
        return None
    return name, port


class HostNames:
    """The Host names a request may use: loopback, the bound address, and MCP_ALLOWED_HOSTS."""

    def __init__(self, bound_host: str, allowed: list[str]) -> None:
        self.check_disabled = "*" in allowed
        self._entries: list[tuple[str, str | None]] = []
        for entry in allowed:
            parsed = split_host(entry)
            if parsed is not None:
                self._entries.append(parsed)
        if bound_host not in WILDCARD_BINDS:
            self._entries.append((bound_host.strip("[]").lower().rstrip("."), None))

    def accepts(self, host_header: str | None) -> bool:
        if self.check_disabled:
            return True
        parsed = split_host(host_header or "")
        if parsed is None:
            return False
        name, port = parsed
        if is_loopback(name):
            return True
        # An entry without a port (or with :*) accepts any port.
        return any(
            name == entry_name and entry_port in (None, "*", port) for entry_name, entry_port in self._entries
        )


class Origins:
    """Browser origins allowed to call: loopback pages and MCP_ALLOWED_ORIGINS."""

    def __init__(self, allowed: list[str], check_disabled: bool) -> None:
        self.check_disabled = check_disabled
        self._allowed = [origin.strip().lower().rstrip("/") for origin in allowed]

    def accepts(self, origin: str | None) -> bool:
        if origin is None or self.check_disabled:
            return True
        origin = origin.strip().lower().rstrip("/")
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.hostname and is_loopback(parts.hostname):
            return True
        for allowed in self._allowed:
            if origin == allowed:
                return True
            base = allowed.removesuffix(":*")
            if base != allowed and origin.startswith(base + ":") and origin[len(base) + 1 :].isdigit():
                return True
        return False


class HttpEdges:
    """Refuses foreign Host (421) and Origin (403) headers, and answers GET on the MCP path with 405.

    In stateless JSON mode a GET event stream would never carry a message: 405 (which the
    streamable HTTP spec allows) means no connection can sit on one.
    """

    def __init__(self, app: ASGIApp, hosts: HostNames, origins: Origins, mcp_path: str) -> None:
        self.app = app
        self._hosts = hosts
        self._origins = origins
        self._mcp_path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNCHECKED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        response: PlainTextResponse | None = None
        if not self._hosts.accepts(headers.get("host")):
            logger.warning("refused a request with Host %r (not in MCP_ALLOWED_HOSTS)", headers.get("host"))
            response = PlainTextResponse("Invalid Host header", status_code=421)
        elif not self._origins.accepts(headers.get("origin")):
            logger.warning(
                "refused a request with Origin %r (not in MCP_ALLOWED_ORIGINS)", headers.get("origin")
            )
            response = PlainTextResponse("Invalid Origin header", status_code=403)
        elif scope["path"] == self._mcp_path and scope["method"] == "GET":
            response = PlainTextResponse(
                "This server sends no event streams; use POST", status_code=405, headers={"Allow": "POST"}
            )
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
