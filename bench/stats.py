"""Small statistics helpers for the benchmark tables."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Awaitable, Callable


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p99_ms(samples: list[float]) -> float:
    """Nearest-rank 99th percentile (with fewer than 100 samples, the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1000


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started
