"""At most one log line per interval for messages that a flood of clients could repeat endlessly."""

from __future__ import annotations

import logging
import time

# asyncio reports each failed accept() (e.g. out of file descriptors); uvicorn each bad request.
FLOOD_PRONE_LOGGERS = ("asyncio", "uvicorn.error", "server.http_edges")
INTERVAL_SECONDS = 10.0


class OncePerInterval(logging.Filter):
    """Lets a message (by logger and format string) through once per interval, then counts repeats."""

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # asyncio's message continues with the socket's details: its first line names the problem.
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = time.monotonic()
        last, suppressed = self._last.get(key, (-float("inf"), 0))
        if now - last < self._interval:
            self._last[key] = (last, suppressed + 1)
            return False
        self._last[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} more like this in the last {self._interval:g} s)"
        # The traceback adds dozens of lines and nothing new after the first time.
        if last != -float("inf"):
            record.exc_info = None
            record.exc_text = None
        return True


def limit_flood_prone_loggers(interval: float = INTERVAL_SECONDS) -> None:
    for name in FLOOD_PRONE_LOGGERS:
        logging.getLogger(name).addFilter(OncePerInterval(interval))
