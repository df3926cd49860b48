"""Run the real `session-memory-mcp` console script as a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from localservers.redis_server import free_port

CONSOLE_SCRIPT = str(Path(sys.executable).parent / "session-memory-mcp")
# How long to wait for a cold process before giving up: a stop for a test that would hang, not a
# promise about start-up time (importing mcp alone takes seconds on a loaded machine).
START_PATIENCE_SECONDS = 60

# Only what the child needs: the tests must not depend on the developer's own settings.
BASE_ENV = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}


def child_env(**settings: str) -> dict[str, str]:
    return BASE_ENV | settings


def wait_until_healthy(base_url: str, process: subprocess.Popen[Any], describe: Callable[[], str]) -> None:
    """Return once `base_url`/healthz answers 200; raise with `describe()` if the process exits first."""
    deadline = time.monotonic() + START_PATIENCE_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{describe()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the server did not answer /healthz within {START_PATIENCE_SECONDS} s:\n{describe()}"
            )
        time.sleep(0.1)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serving_http(
    command: list[str], port: int, env: dict[str, str], cwd: Path | None = None
) -> Iterator[str]:
    """Run `command` (an MCP server on 127.0.0.1:`port`); yield its base URL once /healthz answers."""
    # Its log goes to a file, not a pipe: nobody reads a pipe while it serves, so a full one would
    # block the server, and reading a live child's pipe to report a failure would never return.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log, text=True
        )

        def logged() -> str:
            log.seek(0)
            return log.read()

        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, process, logged)
            yield base_url
        finally:
            stop(process)


@contextmanager
def http_server(settings: dict[str, str], host: str = "127.0.0.1") -> Iterator[str]:
    """The console script over streamable HTTP; yields its base URL."""
    port = free_port()
    command = [CONSOLE_SCRIPT, "--transport", "http", "--host", host, "--port", str(port)]
    with serving_http(command, port, child_env(**settings)) as base_url:
        yield base_url
