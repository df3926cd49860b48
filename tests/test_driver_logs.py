"""The database driver's own warnings, which quote the server's words, stay out of the logs."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from localservers.postgres_server import PostgresServer
from localservers.processes import CONSOLE_SCRIPT, START_PATIENCE_SECONDS, child_env
from server.cli import configure_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    loggers = [logging.getLogger(), logging.getLogger("psycopg"), logging.getLogger("psycopg.pool")]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    yield
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers


@pytest.mark.usefixtures("restored_logging")
def test_psycopg_warnings_are_shown_only_at_debug() -> None:
    # The effective level, not isEnabledFor: that also reads logging.disable() and a logger's
    # `disabled` flag, which other code in the same process may have set.
    pool = logging.getLogger("psycopg.pool")
    configure_logging("INFO")
    assert pool.getEffectiveLevel() == logging.ERROR
    configure_logging("DEBUG")
    assert pool.getEffectiveLevel() <= logging.WARNING


def test_a_rejected_user_name_is_not_quoted_by_the_driver_on_stderr(postgres_server: PostgresServer) -> None:
    parts = urlsplit(postgres_server.url)
    url = f"postgresql://no-such-user-4711:wrong-password-0815@{parts.netloc.rsplit('@', 1)[1]}{parts.path}"
    finished = subprocess.run(
        [CONSOLE_SCRIPT, "export", "--session-id", "x"],
        env=child_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=START_PATIENCE_SECONDS,
        check=False,
    )
    assert finished.returncode == 1
    assert "rejected the credentials: check the user name and password in DATABASE_URL" in finished.stderr
    assert "no-such-user-4711" not in finished.stderr
    assert "wrong-password-0815" not in finished.stderr
    assert "psycopg" not in finished.stderr
