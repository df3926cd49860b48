"""MCP_TOKENS_FILE: named clients, one `name:token` per line and `# end` last, reloaded without a restart."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from memory import ConfigurationError

logger = logging.getLogger(__name__)

CLIENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MIN_FILE_TOKEN_CHARS = 16
CHECK_INTERVAL_SECONDS = 1.0
# The last non-empty line of a complete file. A file is often rewritten in place, so a reload
# can catch it half-written: cut after any line, it would still parse, and lock out every
# client it has not reached yet.
END_LINE = "# end"

FileSignature = tuple[int, int, int]
MISSING: FileSignature = (-1, -1, -1)


class TokensFileError(ConfigurationError):
    """The tokens file cannot be read or has a malformed line (named by number, never by content)."""


@dataclass(frozen=True)
class _Snapshot:
    # Tokens are kept only as SHA-256 digests: a lookup by digest reveals nothing usable
    # through timing, and a memory dump shows no token.
    clients: dict[bytes, str]
    signature: FileSignature | None


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def check_complete(text: str) -> None:
    """Raise TokensFileError unless the last non-empty line is the end line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[-1] != END_LINE:
        raise TokensFileError(
            f"incomplete: its last non-empty line must be {END_LINE!r}, written last, "
            "so that a half-written file is never taken"
        )


def parse_tokens(text: str, reserved_names: frozenset[str] = frozenset()) -> dict[bytes, str]:
    """Digest → client name; raise TokensFileError naming the first bad line by its number."""
    clients: dict[bytes, str] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not separator:
            raise TokensFileError(f"line {number}: expected name:token")
        if not CLIENT_NAME_PATTERN.fullmatch(name):
            raise TokensFileError(f"line {number}: a client name is 1 to 64 letters, digits, '_', '.' or '-'")
        if name in reserved_names:
            raise TokensFileError(f"line {number}: the name {name!r} is reserved for MCP_AUTH_TOKEN")
        if len(token) < MIN_FILE_TOKEN_CHARS or any(char.isspace() for char in token):
            raise TokensFileError(
                f"line {number}: a token is {MIN_FILE_TOKEN_CHARS} or more characters without spaces"
            )
        digest = token_digest(token)
        if digest in clients:
            raise TokensFileError(f"line {number}: this token is already given to another line")
        # One name may hold several tokens: that is how a client's token is rotated.
        clients[digest] = name
    return clients


def _signature(path: Path) -> FileSignature:
    status = path.stat()
    return (status.st_mtime_ns, status.st_size, status.st_ino)


def _read(path: Path, reserved_names: frozenset[str]) -> _Snapshot:
    try:
        signature = _signature(path)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise TokensFileError(f"cannot read MCP_TOKENS_FILE ({reason})") from None
    check_complete(text)
    return _Snapshot(parse_tokens(text, reserved_names), signature)


class TokensFile:
    """The clients of the tokens file; a changed file (or SIGHUP) loads it again.

    A file that turns malformed or incomplete (no end line yet) keeps the last good set of
    clients in force and logs a warning, so a typo or a half-written file never locks every
    client out.
    """

    def __init__(self, path: Path, reserved_names: frozenset[str] = frozenset()) -> None:
        self.path = path
        self._reserved = reserved_names
        self._snapshot = _read(path, reserved_names)
        self._seen_signature = self._snapshot.signature
        self._next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
        if not self._snapshot.clients:
            logger.warning("MCP_TOKENS_FILE %s names no client: every token is refused", path)
        if path.stat().st_mode & 0o004:
            logger.warning("MCP_TOKENS_FILE %s can be read by other users: chmod 600 %s", path, path)

    @property
    def client_count(self) -> int:
        return len(self._snapshot.clients)

    def client_for(self, token: str) -> str | None:
        return self._snapshot.clients.get(token_digest(token))

    async def client_for_current(self, token: str) -> str | None:
        """The client holding `token`, after loading the file again if it changed."""
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + CHECK_INTERVAL_SECONDS
            await anyio.to_thread.run_sync(self.reload_if_changed)
        return self.client_for(token)

    def reload_if_changed(self) -> None:
        try:
            signature = _signature(self.path)
        except OSError:
            signature = MISSING
        if signature != self._seen_signature:
            self.reload(announce_failure=False)

    def reload(self, announce_failure: bool = True) -> None:
        """Load the file now; on any problem keep the clients in force and log why."""
        try:
            snapshot = _read(self.path, self._reserved)
        except TokensFileError as exc:
            try:
                signature = _signature(self.path)
            except OSError:
                signature = MISSING
            # Warn once per version of the file, not on every check; always on SIGHUP.
            if announce_failure or signature != self._seen_signature:
                logger.warning(
                    "MCP_TOKENS_FILE %s not reloaded, the previous %d token(s) stay in force: %s",
                    self.path,
                    len(self._snapshot.clients),
                    exc,
                )
            self._seen_signature = signature
            return
        self._snapshot = snapshot
        self._seen_signature = snapshot.signature
        logger.info("MCP_TOKENS_FILE reloaded: %d token(s)", len(snapshot.clients))
