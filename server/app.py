"""The MCP server object and its HTTP application."""

from __future__ import annotations

import hmac
import ipaddress
from importlib import metadata

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from memory import SessionStore
from server.readiness import ReadinessProbe
from server.settings import Settings
from server.tools import register_tools

SERVER_NAME = "session-memory"
MCP_PATH = "/mcp"
INSTRUCTIONS = (
    "Short-term chat memory. Each conversation is a session: a list of turns "
    "{role, content, timestamp}. Save every new message with save_turn (the first call without a "
    "session_id creates the session and returns its id; reuse that id), and read earlier turns "
    "with get_session. Sessions expire after a period without saves."
)
LOOPBACK_NAMES = ("localhost",)


def version() -> str:
    try:
        return metadata.version("session-memory-mcp")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StaticTokenVerifier:
    """Accepts exactly one bearer token, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id="bearer-token", scopes=[])
        return None


def build_server(store: SessionStore, settings: Settings, *, http_base_url: str | None = None) -> MCPServer:
    """The MCP server over an open store; with `http_base_url`, bearer auth when a token is set."""
    auth_token = settings.mcp_auth_token if http_base_url is not None else None
    server = MCPServer(
        SERVER_NAME,
        title="Session memory",
        instructions=INSTRUCTIONS,
        version=version(),
        token_verifier=StaticTokenVerifier(auth_token.get_secret_value()) if auth_token else None,
        auth=AuthSettings(issuer_url=http_base_url, resource_server_url=None) if auth_token else None,
    )
    register_tools(server, store, settings.max_content_chars, settings.session_ttl_seconds)

    @server.custom_route("/healthz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def healthz(request: Request) -> Response:
        # Liveness only: it does not call the store, so it costs no billed command.
        return JSONResponse({"status": "ok", "store": store.backend, "version": version()})

    probe = ReadinessProbe(store)

    @server.custom_route("/readyz", methods=["GET"])  # type: ignore[untyped-decorator]
    async def readyz(request: Request) -> Response:
        # Readiness: one cheap store command (billed on Upstash), for balancers and orchestrators.
        return await probe.answer()

    return server


def transport_security(settings: Settings, host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection: loopback names, the bound host, and the configured extras."""
    if "*" in settings.mcp_allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard is no Host name
        hosts.append(f"{host}:*")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + settings.mcp_allowed_hosts,
        allowed_origins=origins + settings.mcp_allowed_origins,
    )


def build_http_app(server: MCPServer, settings: Settings, host: str) -> Starlette:
    """Stateless streamable HTTP at /mcp: any replica can answer any request."""
    return server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=transport_security(settings, host),
        host=host,
    )


def http_base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
