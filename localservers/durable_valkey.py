"""A Valkey that keeps every acknowledged write across a SIGKILL, and can be paused, killed and restarted.

`appendonly yes` with `appendfsync always`: a write is on disk before its reply leaves, so a
restart on the same port and data directory brings back everything a client was told was
stored. SIGSTOP and SIGCONT pause it: commands queue meanwhile, then run late.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from localservers.redis_server import free_port, launch, wait_for_pong


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
        self._process = launch(self.port, self._workdir.name, durable=True)
        self.paused = False
        wait_for_pong(self._process, self.port)
        return self

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
