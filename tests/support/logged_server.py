"""The HTTP console script as a child process whose log (stderr) goes to a file the test can read."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localservers.processes import CONSOLE_SCRIPT, child_env, stop, wait_until_healthy
from localservers.redis_server import free_port


@dataclass
class LoggedServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log()}")
            time.sleep(0.05)


@contextmanager
def logged_http_server(
    settings: dict[str, str],
    log_path: Path,
    host: str = "127.0.0.1",
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[LoggedServer]:
    port = free_port()
    command = [CONSOLE_SCRIPT, "--transport", "http", "--host", host, "--port", str(port)]
    base_url = f"http://{host}:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=child_env(**settings),
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=preexec_fn,
        )
    server = LoggedServer(base_url, process, log_path)
    try:
        wait_until_healthy(base_url, process, server.log)
        yield server
    finally:
        stop(process)
