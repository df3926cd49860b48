"""The failover runs' results: a summary table for the terminal and the page docs/failover.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.failover.rounds import Round
from bench.failover.writers import Plan
from bench.machine import Machine

RESULT_FILE = "failover.md"


@dataclass
class Campaign:
    machine: Machine
    plan: Plan
    deadline: float
    quick: bool
    rounds: list[Round] = field(default_factory=list)

    @property
    def failures(self) -> int:
        """Acknowledged turns lost at REDIS_REPLICA_ACKS=1; doubled or reordered at any setting;
        and rounds whose failover did not finish."""
        return sum(
            (r.tally.lost if r.acks else 0)
            + r.tally.doubled
            + r.tally.reordered
            + (r.timeline.error is not None)
            for r in self.rounds
        )


COLUMNS = (
    "REDIS_REPLICA_ACKS",
    "round",
    "acknowledged",
    "lost",
    "doubled",
    "reordered",
    "unacknowledged calls",
    "replica primary after",
    "killed node back after",
    "killed slots unavailable for",
    "unavailable answers (killed slots / others)",
    "longest delayed call",
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _row(r: Round) -> list[str]:
    t = r.tally
    return [
        str(r.acks),
        str(r.number),
        str(t.acknowledged),
        str(t.lost),
        str(t.doubled),
        str(t.reordered),
        str(t.unacked_calls),
        _seconds(r.timeline.promoted),
        _seconds(r.timeline.rejoined),
        _seconds(r.timing.victim_outage),
        f"{r.timing.unavailable_victim} / {r.timing.unavailable_other}",
        _seconds(r.timing.longest_delay),
    ]


def summary(rounds: list[Round]) -> str:
    rows = [list(COLUMNS), *(_row(r) for r in rounds)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


def markdown(campaign: Campaign) -> str:
    return summary(campaign.rounds) + "\n"
