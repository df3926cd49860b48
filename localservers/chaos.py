"""Random faults, drawn per request from a probability table with a seed, counted and logged.

`Chaos` decides; `ChaosGateway` is the Upstash gateway asking it about every request that has
no one-shot fault queued. The fault proxy (`fault_proxy`) asks the same kind of table about
every chunk a client sends to Valkey.
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from localservers.gateway import Fault, FaultPlan, UpstashGateway


class Chaos:
    """Draws a fault kind (or none) per request; thread-safe; off until `enabled` is set."""

    def __init__(self, weights: Mapping[str, float], seed: int) -> None:
        total = sum(weights.values())
        if any(weight < 0 for weight in weights.values()) or total > 1:
            raise ValueError(f"fault probabilities must be 0 or more and add up to at most 1, not {weights}")
        self.weights = dict(weights)
        self.enabled = False
        self.counts: collections.Counter[str] = collections.Counter()
        # (seconds since this plan was made, kind, detail): the run's fault log.
        self.log: list[tuple[float, str, str]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def draw(self) -> str | None:
        """A fault kind for this request, or None; counted and logged when one is chosen."""
        if not self.enabled:
            return None
        with self._lock:
            point = self._rng.random()
            for kind, weight in self.weights.items():
                if point < weight:
                    return kind
                point -= weight
        return None

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)

    def record(self, kind: str, detail: str = "") -> None:
        """Count a fault that was applied (a drawn one, or one the caller made itself)."""
        with self._lock:
            self.counts[kind] += 1
            self.log.append((time.monotonic() - self._started, kind, detail))


# Gateway fault kinds, as `Chaos` names them.
GATEWAY_KINDS = ("stall", "execute_late", "html_500", "json_503", "drop_after_execute")


@dataclass
class ChaosGateway(UpstashGateway):
    """The gateway with random faults: stalls and late executions measured against `deadline`.

    A stall holds the request past the deadline and drops it unexecuted; a late execution holds
    it 0.5 to 3 s past the deadline and then runs it anyway.
    """

    chaos: Chaos | None = None
    deadline: float = 1.0

    def _plan(self) -> FaultPlan | None:
        if self.chaos is None:
            return None
        kind = self.chaos.draw()
        if kind is None:
            return None
        if kind == "stall":
            seconds = self.deadline + self.chaos.uniform(0.2, 1.0)
        elif kind == "execute_late":
            seconds = self.deadline + self.chaos.uniform(0.5, 3.0)
        else:
            seconds = 0.0
        self.chaos.record(kind, f"{seconds:.2f} s" if seconds else "")
        return FaultPlan(Fault(kind), seconds)

    async def _answer(
        self,
        plan: FaultPlan | None,
        target: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> tuple[int, bytes, str] | None:
        if plan is None:
            plan = self._plan()
        return await super()._answer(plan, target, headers, body, writer)

    @property
    def in_flight(self) -> int:
        """Requests being handled now, late executions included."""
        return self._in_flight
