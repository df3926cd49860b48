"""The HTTP console script as a child process whose log (stderr) goes to a file the test can read."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from localservers.processes import CONSOLE_SCRIPT, child_env
from localservers.redis_server import free_port


@dataclass
class LoggedServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
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
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{server.log()}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /healthz within 20 s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
