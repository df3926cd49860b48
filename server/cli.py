"""`session-memory-mcp`: parse flags, configure logging, open the store once, serve."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

import anyio
import uvicorn
from pydantic import ValidationError

from memory import (
    ConfigurationError,
    SessionMemoryError,
    SessionStore,
    describe_validation_error,
    open_store,
)
from server.app import MCP_PATH, build_http_app, build_server, http_base_url, is_loopback, version
from server.settings import Settings

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


def load_settings() -> Settings:
    try:
        return Settings(_env_file=".env")
    except ValidationError as exc:
        raise SystemExit(f"session-memory-mcp: invalid settings\n{describe_validation_error(exc)}") from None
    except ConfigurationError as exc:
        raise SystemExit(f"session-memory-mcp: {exc}") from None


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    settings = load_settings()
    if args.transport == "http" and not is_loopback(args.host) and settings.mcp_auth_token is None:
        raise SystemExit(
            f"session-memory-mcp: refusing to serve HTTP on {args.host} without MCP_AUTH_TOKEN; "
            "set a token (16 characters or more) or bind to 127.0.0.1"
        )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, settings, args)


async def serve(settings: Settings, args: argparse.Namespace) -> None:
    try:
        store = await open_store(settings)
    except SessionMemoryError as exc:
        raise SystemExit(f"session-memory-mcp: {exc}") from None
    try:
        await _serve_with(store, settings, args)
    finally:
        await store.aclose()


async def _serve_with(store: SessionStore, settings: Settings, args: argparse.Namespace) -> None:
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
    if args.host in WILDCARD_HOSTS and not settings.mcp_allowed_hosts:
        logger.warning(
            "listening on all interfaces, but only loopback Host headers are accepted: "
            "set MCP_ALLOWED_HOSTS to the names clients use (others get 421)"
        )
    server = build_server(store, settings, http_base_url=http_base_url(args.host, args.port))
    app = build_http_app(server, settings, args.host)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None, access_log=False)
    await uvicorn.Server(config).serve()
