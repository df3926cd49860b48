"""A Valkey that keeps every acknowledged write across a SIGKILL, and can be paused, killed and restarted.

`appendonly yes` with `appendfsync always`: a write is on disk before its reply leaves, so a
restart on the same port and data directory brings back everything a client was told was
stored. SIGSTOP and SIGCONT pause it: commands queue meanwhile, then run late.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from localservers.redis_server import free_port, server_binary

# Patience for a loaded machine (an AOF to replay after a kill), not a bound.
_START_PATIENCE_SECONDS = 30


@dataclass
class DurableValkey:
    port: int = field(default_factory=free_port)
    paused: bool = False
    _process: subprocess.Popen[bytes] | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        assert self._workdir is not None, "not started"
        return Path(self._workdir.name)

    def start(self) -> DurableValkey:
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="session-memory-durable-")
        args = [
            str(server_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            self._workdir.name,
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.paused = False
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_PATIENCE_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Valkey exited with code {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):  # not -LOADING: the AOF is replayed
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"Valkey did not answer PING within {_START_PATIENCE_SECONDS} s")

    def pause(self) -> None:
        """SIGSTOP: it holds every connection and runs nothing until `resume()`."""
        if self._process is not None and not self.paused:
            os.kill(self._process.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self._process is not None and self.paused:
            os.kill(self._process.pid, signal.SIGCONT)
            self.paused = False

    def kill_and_restart(self) -> None:
        """SIGKILL, then start again on the same port and data directory (its AOF replayed)."""
        self._kill()
        self.start()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
            self.paused = False

    def stop(self) -> None:
        self._kill()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
