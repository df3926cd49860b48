"""Milliseconds since the epoch: the clock turns are stamped with."""

from __future__ import annotations

import threading
import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _ServerClock:
    """Milliseconds, never the same twice in this process.

    Two saves of equal text stamped in one millisecond are two messages; giving each its
    own stamp lets a retried save recognise its own earlier attempt by its timestamp.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def stamp(self) -> int:
        with self._lock:
            self._last = max(now_ms(), self._last + 1)
            return self._last


server_stamp = _ServerClock().stamp
