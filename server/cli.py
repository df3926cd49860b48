"""`session-memory-mcp`: parse flags, configure logging, open the store once, serve."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import anyio
import uvicorn
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from mcp.server.mcpserver import MCPServer

from memory import (
    SessionMemoryError,
    SessionStore,
    StoreUnavailableError,
    open_store,
)
from server.app import MCP_PATH, HttpAuth, build_http_app, build_server, http_auth, http_base_url, version
from server.capture_commands import hook_main, save_main
from server.connections import KEEP_ALIVE_SECONDS, MAX_HEADER_BYTES, connection_cap, guarded_protocol
from server.envfiles import env_files, user_env_file
from server.export_command import export_main
from server.http_edges import WILDCARD_BINDS, is_loopback
from server.import_command import import_main
from server.log_limits import limit_flood_prone_loggers
from server.reindex_command import reindex_main
from server.settings import Settings, load_settings
from server.stdio import run_stdio
from server.tokens_file import TokensFileError

logger = logging.getLogger("server")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Commands that run once and exit, each with its own arguments, in place of serving.
SUBCOMMANDS = {
    "reindex": reindex_main,
    "hook": hook_main,
    "save": save_main,
    "export": export_main,
    "import": import_main,
}
# Short enough that a wrong setting stops the server within 5 s of its start; a store that
# is merely slow at startup only earns a warning, so this can be strict.
STARTUP_CHECK_SECONDS = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
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
# Drivers whose warnings quote the server's words (a user name, a host, a database) for each
# failed connection: the store reports every failure itself, in words that quote nothing, so
# these speak only at DEBUG, or for errors.
DRIVER_LOGGERS = ("psycopg",)


class ServerBuilder(Protocol):
    """What builds the MCP server the CLI serves: `build_server`, or one with something added."""

    def __call__(
        self, store: SessionStore, settings: Settings, *, auth: HttpAuth | None = None
    ) -> MCPServer: ...


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="session-memory-mcp",
        description="MCP server giving agents short-term chat memory (Upstash Redis, Redis or SQLite). "
        "`session-memory-mcp reindex` indexes sessions written by other programs; `hook` saves Claude "
        "Code's conversation from its hooks; `save` saves one turn from stdin; `export` and `import` "
        "move sessions between stores as JSON Lines (see each one's --help).",
        epilog=f"Settings come from the environment, which wins, then from --env-file if given, else "
        f"from ./.env and then {user_env_file()}. The store: UPSTASH_REDIS_REST_URL with "
        "UPSTASH_REDIS_REST_TOKEN, else REDIS_URL, else an SQLite file at SQLITE_PATH (by default in "
        "the user data directory). Every setting: "
        + ", ".join(name.upper() for name in Settings.model_fields)
        + ".",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help="read settings from this file instead of ./.env and the user config directory's .env",
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
    for name in DRIVER_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
    limit_flood_prone_loggers()


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


def main(argv: Sequence[str] | None = None, *, build: ServerBuilder = build_server) -> None:
    """Serve until stdin closes or SIGINT/SIGTERM arrives; a stop on request exits with status 0.

    `build` lets the benchmarks serve the same way with a no-op tool added.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in SUBCOMMANDS:
        configure_logging("WARNING")
        SUBCOMMANDS[arguments[0]](arguments[1:], load_settings)
        return
    args = parse_args(arguments)
    configure_logging(args.log_level)
    files = env_files(args.env_file, Path.cwd())
    settings = load_settings(files)
    check_transport(settings, args)
    auth: HttpAuth | None = None
    if args.transport == "http":
        try:
            auth = http_auth(settings, http_base_url(args.host, args.port))
        except TokensFileError as exc:
            raise SystemExit(
                f"session-memory-mcp: MCP_TOKENS_FILE {settings.mcp_tokens_file}: {exc}"
            ) from None
    # Where signals cannot be routed into the event loop (Windows), Ctrl-C still arrives as
    # KeyboardInterrupt, and a stop on request is no error.
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, settings, args, files, auth, build)


async def serve(
    settings: Settings,
    args: argparse.Namespace,
    files: Sequence[Path] = (),
    auth: HttpAuth | None = None,
    build: ServerBuilder = build_server,
) -> None:
    """Open and check the store, then serve until stdin closes (stdio) or a stop signal arrives."""
    stopper = _Stopper()
    failure: SessionMemoryError | None = None
    async with anyio.create_task_group() as group:
        # Listening before the store opens: a stop during the startup check is clean too.
        stopper.action = group.cancel_scope.cancel
        await group.start(_stop_on_signal, stopper)
        failure = await _serve_store(settings, args, files, auth, stopper, build)
        group.cancel_scope.cancel()
    if failure is not None:
        logger.debug("stopping: the store refused the settings")
        # The SQLite path is left out of errors sent to clients; the operator needs it here.
        where = f" (SQLITE_PATH {settings.sqlite_path})" if settings.backend == "sqlite" else ""
        raise SystemExit(f"session-memory-mcp: {failure}{where}")


async def _serve_store(
    settings: Settings,
    args: argparse.Namespace,
    files: Sequence[Path],
    auth: HttpAuth | None,
    stopper: _Stopper,
    build: ServerBuilder,
) -> SessionMemoryError | None:
    """Serve; a store error that stops the server before it serves is returned, not raised."""
    try:
        store = await open_store(settings.store_config())
    except SessionMemoryError as exc:
        return exc
    try:
        failure = await check_store(store)
        if failure is None:
            await _serve_with(store, settings, args, files, auth, stopper, build)
        return failure
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


async def check_store(store: SessionStore) -> SessionMemoryError | None:
    """Prove the settings before serving: a wrong one is returned, an outage only warns."""
    # The moment the promise "a wrong setting stops the server within seconds" is timed from:
    # everything before it is the interpreter and the imports, which a loaded machine slows.
    logger.debug("checking the %s store (deadline %g s)", store.backend, STARTUP_CHECK_SECONDS)
    try:
        await store.check(STARTUP_CHECK_SECONDS)
    except StoreUnavailableError as exc:
        logger.warning(
            "the %s store did not answer at startup; serving anyway, and each tool call will say so "
            "until it does: %s",
            store.backend,
            exc,
        )
    except SessionMemoryError as exc:
        return exc
    return None


async def _serve_with(
    store: SessionStore,
    settings: Settings,
    args: argparse.Namespace,
    files: Sequence[Path],
    auth: HttpAuth | None,
    stopper: _Stopper,
    build: ServerBuilder,
) -> None:
    where = "stdio" if args.transport == "stdio" else f"http://{args.host}:{args.port}{MCP_PATH}"
    logger.info(
        "session-memory-mcp %s: store %s (%s), transport %s, session TTL %d s, settings from %s",
        version(),
        store.backend,
        store.location,
        where,
        settings.session_ttl_seconds,
        " and ".join(["the environment", *map(str, files)]),
    )
    if args.transport == "stdio":
        await run_stdio(build(store, settings))
        return
    if settings.jwt_mode and settings.mcp_public_url is None and not is_loopback(args.host):
        logger.warning(
            "MCP_PUBLIC_URL is not set: the protected-resource metadata names %s%s, "
            "which clients behind a proxy or DNS name cannot use",
            http_base_url(args.host, args.port),
            MCP_PATH,
        )
    if args.host in WILDCARD_BINDS and not settings.mcp_allowed_hosts:
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
    server = build(store, settings, auth=auth)
    app = build_http_app(server, settings, args.host)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        http=guarded_protocol(connection_cap(), settings.mcp_request_timeout_seconds),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    http = _UvicornServer(config)
    stopper.action = http.stop  # uvicorn's own graceful shutdown instead of a cancellation
    await http.serve()


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


class _Stopper:
    """What a stop signal does; it changes once there is an HTTP server to shut down gracefully."""

    def __init__(self) -> None:
        self.action: Callable[[], object] = lambda: None


async def _stop_on_signal(stopper: _Stopper, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
    """Run `stopper.action` on SIGINT or SIGTERM, once per signal."""
    if sys.platform == "win32":  # no signal handlers in the event loop; Ctrl-C raises instead
        task_status.started()
        await anyio.sleep_forever()
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        async for received in signals:
            logger.info("stopping on %s", signal.Signals(received).name)
            stopper.action()


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI stops both transports the same way."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would re-raise the signal after shutting down, ending the process with it.
        yield

    def stop(self) -> None:
        # The first call shuts down gracefully; a second one stops waiting for open requests.
        self.force_exit = self.should_exit
        self.should_exit = True
