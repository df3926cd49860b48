"""The SQLite database is private to the user running the server: directory 0700, files 0600."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from memory.errors import StoreError

logger = logging.getLogger(__name__)

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# SQLite creates these beside the database, with the database file's own permissions.
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")


def prepare_private_database(path: Path) -> None:
    """Create the directory (0700) and the empty database file (0600) if missing, whatever the umask.

    Existing ones are left as they are, with a warning if other users may read them. Where
    modes mean nothing (Windows, whose ACLs decide who reads a file), only the files are made.
    """
    directory = path.parent
    if os.name != "posix":
        logger.info("file modes are not set on this platform: %s is protected by its folder's ACLs", path)
    try:
        if directory.is_dir():
            warn_if_open_to_others(directory)
        else:
            directory.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
            os.chmod(directory, PRIVATE_DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
        _create_private_file(path)
    except OSError as exc:
        raise StoreError(
            f"cannot create the session database at {path} ({exc.strerror}); "
            "set SQLITE_PATH to a writable location"
        ) from exc
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILE_SUFFIXES)):
        if file.exists():
            warn_if_open_to_others(file)


def _create_private_file(path: Path) -> None:
    # Created here rather than by SQLite, which would use 0644 under the usual umask; its -wal
    # and -shm files then copy this file's mode.
    # The umask can only take bits away, so the file is never more open than 0600 before the
    # chmod; os.chmod (not os.fchmod, absent on Windows before 3.13) then restores them.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
        os.chmod(path, PRIVATE_FILE_MODE)


def warn_if_open_to_others(path: Path) -> None:
    if os.name != "posix":
        return  # st_mode does not say who may read a file there
    mode = stat.S_IMODE(path.stat().st_mode)
    # A sticky directory (/tmp) is shared by design; the files in it are what matter.
    if mode & 0o007 and not mode & stat.S_ISVTX:
        wanted = PRIVATE_DIRECTORY_MODE if path.is_dir() else PRIVATE_FILE_MODE
        logger.warning(
            "%s can be read by other users (mode %o); the chat history is private: chmod %o %s",
            path,
            mode,
            wanted,
            path,
        )
