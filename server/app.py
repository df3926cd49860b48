"""The MCP server object and its HTTP application."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from urllib.parse import unquote_to_bytes

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
    ListResourcesResult,
    PaginatedRequestParams,
)
from pydantic import AnyUrl
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from memory import SessionStore
from server.auth import STATIC_TOKEN_CLIENT, DenialLog, JwtVerifier, NamedTokenVerifier
from server.http_edges import HostNames, HttpEdges, Origins
from server.isolation import StoreLookup, store_lookup
from server.jwks import JwksCache
from server.listing import list_resources_page, register_completions
from server.prompts import register_prompts, unknown_prompt
from server.readiness import ReadinessProbe
from server.resources import register_resources
from server.settings import Capture, Settings
from server.tokens_file import TokensFile
from server.tools import register_tools

SERVER_NAME = "session-memory"
MCP_PATH = "/mcp"
_READING = (
    "To go back to an earlier conversation whose id you do not have, call list_sessions. "
    "Sessions expire after a period without saves."
)
_INSTRUCTIONS: dict[Capture, str] = {
    "model": (
        "Short-term chat memory. Each conversation is a session: a list of turns "
        "{role, content, timestamp}. Save every new message with save_turn, or an exchange (the "
        "user's message and the reply) with save_turns (the first call without a session_id creates "
        "the session and returns its id; reuse that id), and read earlier turns with get_session. "
        "To retry a save that failed, repeat the same call with the id its error names: it is stored "
        "once. " + _READING
    ),
    # The host's hooks store every message: a save by the model would store each one twice.
    "hooks": (
        "Short-term chat memory. Each conversation is a session: a list of turns "
        "{role, content, timestamp}. The host saves this conversation's messages itself, as they are "
        "written: do not save them with save_turn or save_turns, or each is stored twice. Read earlier "
        "turns with get_session. " + _READING
    ),
}


def instructions(capture: Capture) -> str:
    """What the server tells hosts at initialization: how to use it, given who saves the messages."""
    return _INSTRUCTIONS[capture]


def version() -> str:
    try:
        return metadata.version("session-memory-mcp")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class HttpAuth:
    """How /mcp authenticates: the verifier, the SDK's settings, and what may be reloaded."""

    verifier: TokenVerifier
    settings: AuthSettings
    tokens_file: TokensFile | None = None
    jwks: JwksCache | None = None


def http_auth(settings: Settings, base_url: str) -> HttpAuth | None:
    """The configured auth mode, or None when none is (loopback only); raises TokensFileError."""
    jwt = settings.jwt_settings()
    if jwt is not None:
        jwks_url, issuer, audience = jwt
        jwks = JwksCache(jwks_url)
        resource_url = settings.mcp_public_url or base_url + MCP_PATH
        return HttpAuth(
            verifier=JwtVerifier(jwks, issuer, audience),
            # The SDK publishes these as RFC 9728 protected-resource metadata, so clients find
            # the authorization server; the verifier checks the audience itself.
            settings=AuthSettings(
                issuer_url=issuer,
                resource_server_url=resource_url,
                required_scopes=settings.mcp_jwt_required_scopes or None,
                validate_token_resource=False,
            ),
            jwks=jwks,
        )
    static = settings.mcp_auth_token.get_secret_value() if settings.mcp_auth_token else None
    tokens_file = (
        TokensFile(settings.mcp_tokens_file, reserved_names=frozenset({STATIC_TOKEN_CLIENT}))
        if settings.mcp_tokens_file is not None
        else None
    )
    if static is None and tokens_file is None:
        return None
    return HttpAuth(
        verifier=NamedTokenVerifier(static, tokens_file),
        settings=AuthSettings(issuer_url=base_url, resource_server_url=None),
        tokens_file=tokens_file,
    )


class StrictServer(MCPServer[Any]):
    """An MCPServer that refuses what it does not know, saying what it knows instead.

    An unknown prompt name is invalid params (-32602), as an unknown resource URI is; the SDK
    would answer "Internal server error" and log a traceback. A tool argument the tool does not
    declare is refused too; the SDK would drop it, and a misspelt `timestamp` would then turn a
    retry into a second turn.
    """

    _declared: dict[str, frozenset[str]] | None = None
    # Where resources/list finds the caller's sessions; without it, only the fixed resources.
    session_stores: StoreLookup | None = None

    async def _handle_list_resources(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        # The SDK lists only resources registered up front, in one page; sessions come and go.
        fixed = await self.list_resources()
        if self.session_stores is None:
            return ListResourcesResult(resources=fixed)
        cursor = params.cursor if params is not None else None
        return await list_resources_page(self.session_stores(), fixed, cursor)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        known = sorted(prompt.name for prompt in await self.list_prompts())
        if name not in known:
            raise unknown_prompt(name, known)
        return await super().get_prompt(name, arguments, context)

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        # The SDK decodes a template's value leniently: "%ZZ" would stay as text and "%FF" become
        # U+FFFD, so two URIs could name one session. An id is percent-encoded UTF-8, or nothing.
        if problem := percent_encoding_problem(str(uri)):
            raise MCPError(code=INVALID_PARAMS, message=f"Invalid session id: the URI {problem}")
        return await super().read_resource(uri, context)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        if self._declared is None:  # the tools are all registered before the first call
            self._declared = {
                tool.name: frozenset(tool.input_schema.get("properties", {}))
                for tool in await self.list_tools()
            }
        declared = self._declared.get(name)
        unknown = sorted(set(arguments) - declared) if declared is not None else []
        if unknown:
            raise ToolError(
                f"Invalid arguments: {name} has no argument {', '.join(map(repr, unknown))}; "
                f"its arguments are {', '.join(sorted(declared or ()))}"
            )
        return await super().call_tool(name, arguments, context)


_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def percent_encoding_problem(uri: str) -> str | None:
    """What is wrong with a URI's percent-encoding, or None: each % starts two hex digits, and
    the bytes they encode are UTF-8."""
    if "%" not in uri:
        return None
    if _PERCENT_ESCAPE.sub("", uri).count("%"):
        return "has a '%' that does not start an escape of two hex digits (write '%25' for '%')"
    try:
        unquote_to_bytes(uri).decode("utf-8")
    except UnicodeDecodeError:
        return "percent-encodes bytes that are not UTF-8 text"
    return None


def build_server(store: SessionStore, settings: Settings, *, auth: HttpAuth | None = None) -> MCPServer:
    """The MCP server over an open store; with `auth`, /mcp needs a bearer token."""
    server = StrictServer(
        SERVER_NAME,
        title="Session memory",
        instructions=instructions(settings.capture),
        version=version(),
        token_verifier=auth.verifier if auth else None,
        auth=auth.settings if auth else None,
        # Nothing here ever changes a list or notifies about a resource, so no listen stream
        # either: without it the 2026-07-28 protocol advertises no listChanged or subscribe.
        subscriptions=False,
    )
    stores = store_lookup(store, settings.session_isolation)
    register_tools(server, stores, settings.max_content_chars, settings.session_ttl_seconds)
    register_resources(server, stores)
    register_prompts(server, stores, settings.session_ttl_seconds, settings.capture)
    register_completions(server, stores)
    server.session_stores = stores

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


def build_http_app(server: MCPServer, settings: Settings, host: str) -> ASGIApp:
    """Stateless streamable HTTP at /mcp: any replica can answer any request."""
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        # Host and Origin are checked by HttpEdges (case, trailing dot, any loopback address);
        # the SDK still checks the Content-Type of POSTs.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host=host,
    )
    # No redirect from /mcp/ to /mcp: it would be sent before authentication, built from Host.
    app.router.redirect_slashes = False
    hosts = HostNames(host, settings.mcp_allowed_hosts)
    origins = Origins(settings.mcp_allowed_origins, check_disabled=hosts.check_disabled)
    return HttpEdges(DenialLog(app), hosts, origins, MCP_PATH)


def http_base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
