"""Which `.env` files the server reads, in which order.

The real environment always wins. Below it, either the one file `--env-file` names, or else
both of these, the working directory's winning over the user config directory's:

    ./.env                                   the directory the host starts the server in
    <user config dir>/session-memory-mcp/.env   ~/.config/... on Linux, see user_env_file()

Hosts start servers in directories of their own choosing, so the user config directory is
the place that works for every host.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP_NAME = "session-memory-mcp"
ENV_FILE_NAME = ".env"


def user_env_file() -> Path:
    """The `.env` in the user config directory, whether or not it exists."""
    return platformdirs.user_config_path(APP_NAME) / ENV_FILE_NAME


def env_files(explicit: Path | None, working_directory: Path) -> list[Path]:
    """The existing files to read, lowest priority first (pydantic-settings lets later files win)."""
    if explicit is not None:
        return [explicit.expanduser().resolve()]
    found: list[Path] = []
    for candidate in (user_env_file(), working_directory / ENV_FILE_NAME):
        if candidate.is_file() and candidate.resolve() not in found:
            found.append(candidate.resolve())
    return found
