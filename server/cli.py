"""`session-memory-mcp`: parse flags, configure logging, open the store once, serve."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

import anyio
import uvicorn
from pydantic import ValidationError

from memory import (
    ConfigurationError,
    SessionMemoryError,
    SessionStore,
    backend_name,
    describe_validation_error,
    open_store,
)
from server.app import MCP_PATH, HttpAuth, build_http_app, build_server, http_auth, http_base_url, version
from server.connections import KEEP_ALIVE_SECONDS, MAX_HEADER_BYTES, connection_cap, guarded_protocol
from server.http_edges import is_loopback
from server.log_limits import limit_flood_prone_loggers
from server.settings import Settings
from server.tokens_file import TokensFileError

logger = logging.getLogger("server")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
WILDCARD_HOSTS = ("0.0.0.0", "::")  # noqa: S104 - compared against, not bound
# Libraries that log every request at INFO; below DEBUG they only speak up for problems.
CHATTY_LOGGERS = (
    "mcp",
    "httpx",
    "httpx2",
    "httpcore",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "sse_starlette",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="session-memory-mcp",
        description="MCP server giving agents short-term chat memory (Upstash Redis, Redis or SQLite). "
        "Settings come from the environment and .env; see .env.example.",
    )
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="default: stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="INFO", type=str.upper, help="default: INFO"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    return parser.parse_args(argv)


def configure_logging(level: str) -> None:
    """Everything to stderr: on stdio, stdout carries the protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    library_level = logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    limit_flood_prone_loggers()


def load_settings() -> Settings:
    try:
        return Settings(_env_file=".env")
    except ValidationError as exc:
        raise SystemExit(f"session-memory-mcp: invalid settings\n{describe_validation_error(exc)}") from None
    except ConfigurationError as exc:
        raise SystemExit(f"session-memory-mcp: {exc}") from None


def check_transport(settings: Settings, args: argparse.Namespace) -> None:
    """Refuse combinations of settings and transport that cannot be served safely."""
    if args.transport == "http" and not is_loopback(args.host) and not settings.auth_configured:
        raise SystemExit(
            f"session-memory-mcp: refusing to serve HTTP on {args.host} without authentication; "
            "set MCP_AUTH_TOKEN (16 characters or more), MCP_TOKENS_FILE or MCP_JWT_*, "
            "or bind to 127.0.0.1"
        )
    if settings.session_isolation == "per-client" and (
        args.transport != "http" or not settings.auth_configured
    ):
        raise SystemExit(
            "session-memory-mcp: SESSION_ISOLATION=per-client names each client by its credentials: "
            "it needs --transport http with MCP_AUTH_TOKEN, MCP_TOKENS_FILE or MCP_JWT_*"
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    settings = load_settings()
    check_transport(settings, args)
    auth: HttpAuth | None = None
    if args.transport == "http":
        try:
            auth = http_auth(settings, http_base_url(args.host, args.port))
        except TokensFileError as exc:
            raise SystemExit(
                f"session-memory-mcp: MCP_TOKENS_FILE {settings.mcp_tokens_file}: {exc}"
            ) from None
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, settings, args, auth)


async def serve(settings: Settings, args: argparse.Namespace, auth: HttpAuth | None = None) -> None:
    try:
        store = await open_store(settings)
    except SessionMemoryError as exc:
        # The SQLite path is left out of errors sent to clients; the operator needs it here.
        where = f" (SQLITE_PATH {settings.sqlite_path})" if backend_name(settings) == "sqlite" else ""
        raise SystemExit(f"session-memory-mcp: {exc}{where}") from None
    try:
        await _serve_with(store, settings, args, auth)
    finally:
        await store.aclose()


async def _serve_with(
    store: SessionStore, settings: Settings, args: argparse.Namespace, auth: HttpAuth | None
) -> None:
    where = "stdio" if args.transport == "stdio" else f"http://{args.host}:{args.port}{MCP_PATH}"
    logger.info(
        "session-memory-mcp %s: store %s (%s), transport %s, session TTL %d s",
        version(),
        store.backend,
        store.location,
        where,
        settings.session_ttl_seconds,
    )
    if args.transport == "stdio":
        await build_server(store, settings).run_stdio_async()
        return
    if settings.jwt_mode and settings.mcp_public_url is None and not is_loopback(args.host):
        logger.warning(
            "MCP_PUBLIC_URL is not set: the protected-resource metadata names %s%s, "
            "which clients behind a proxy or DNS name cannot use",
            http_base_url(args.host, args.port),
            MCP_PATH,
        )
    if args.host in WILDCARD_HOSTS and not settings.mcp_allowed_hosts:
        logger.warning(
            "listening on all interfaces, but only loopback Host headers are accepted: "
            "set MCP_ALLOWED_HOSTS to the names clients use (others get 421)"
        )
    logger.info(
        "HTTP auth: %s; session isolation: %s", describe_auth(settings, auth), settings.session_isolation
    )
    if auth is not None and auth.tokens_file is not None:
        reload_on_sighup(auth)
    if auth is not None and auth.jwks is not None:
        await auth.jwks.refresh()  # early word in the log if the provider cannot be reached
    server = build_server(store, settings, auth=auth)
    app = build_http_app(server, settings, args.host)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        http=guarded_protocol(connection_cap()),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    await uvicorn.Server(config).serve()


def describe_auth(settings: Settings, auth: HttpAuth | None) -> str:
    if auth is None:
        return "none (loopback only)"
    if auth.jwks is not None:
        return "JWT (MCP_JWT_*)"
    modes = ["MCP_AUTH_TOKEN"] if settings.mcp_auth_token is not None else []
    if auth.tokens_file is not None:
        modes.append(f"MCP_TOKENS_FILE ({auth.tokens_file.client_count} token(s))")
    return " + ".join(modes)


def reload_on_sighup(auth: HttpAuth) -> None:
    tokens_file = auth.tokens_file
    if tokens_file is None or not hasattr(signal, "SIGHUP"):
        return
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, tokens_file.reload))
