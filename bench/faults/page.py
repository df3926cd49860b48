"""The campaign's results: a summary table for the terminal and the page docs/reliability.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.faults.tally import Tally
from bench.faults.workload import ClientStats, Workload
from bench.machine import Machine

RESULT_FILE = "reliability.md"

INTRO = """\
# Reliability under faults

This page is written by `python -m bench.faults`, a fault campaign. For each store it starts a
Valkey (for Redis with `appendonly yes` and `appendfsync always`, so that a write acknowledged
before a SIGKILL survives the restart), the local Upstash REST gateway in front of it (Upstash)
or a fault-injecting TCP proxy (Redis), and several `session-memory-mcp` processes over
streamable HTTP on that store, each with a short `STORE_TIMEOUT_SECONDS`. Many MCP clients,
spread over the processes, then call `save_turn` and `save_turns` one call at a time into a few
sessions they share and many of their own; about half of the messages are equal ("ok", "yes",
"thanks") and half carry a client timestamp. One shared session is hot: a quarter of all calls,
nearly all a user's "ok" without a timestamp, so that equal turns stamped in the same
millisecond by different processes meet the faults. Some sessions are deleted mid-run by their
owner, which then keeps saving into them.

Every "Store unavailable" error is retried as the README says: the same call, with the call `id`
the error names when the tools take one, else with the timestamps it names; any other error is
not retried. Faults are drawn at random with a seed: on Upstash, requests stalled past the
deadline and dropped, executed 0.5 to 3 s late, answered with an HTML 500 or a JSON 503 without
running, or cut after running; on Redis, bytes held past the deadline then forwarded,
connections reset before or after forwarding, and Valkey paused (SIGSTOP, SIGCONT) or killed
and restarted.

When the clients stop, so do the faults; once no request has been in flight for a few seconds
every session is read straight from Valkey. A message is **lost** when it was acknowledged and
is not stored, **doubled** when it is stored more than once, **reordered** when one client's
acknowledged messages in a session are not stored in the order it sent them. Equal messages are
counted per session, role and content: stored at least as often as acknowledged and at most as
often as sent; and each acknowledged one claims the timestamp its result gave, which one stored
turn answers only once (two acknowledgements of one stored turn are a loss). Unacknowledged
calls (no success after every retry, or an error that is not retried) may or may not be
stored; they are never counted as lost. The command exits non-zero when anything is lost,
doubled or reordered.

```bash
python -m bench.faults                       # both stores, 45 s each; rewrites docs/reliability.md
python -m bench.faults --store upstash --seconds 120 --seed 7
python -m bench.faults --quick --out /tmp/reliability.md   # about 10 s per store, fewer clients
```

The servers' logs and every injected fault (`faults.tsv`) go to a temporary directory the
command names at the end, or to `--logs DIR`.
"""


@dataclass
class StoreRun:
    store: str
    tally: Tally
    stats: ClientStats
    faults: dict[str, int]
    seconds: float
    sessions: int
    protocol: str

    @property
    def calls_per_second(self) -> float:
        return self.stats.calls / self.seconds if self.seconds else 0.0


@dataclass
class Campaign:
    machine: Machine
    workload: Workload
    servers: int
    deadline: float
    quick: bool
    runs: list[StoreRun] = field(default_factory=list)


COLUMNS = ("store", "acknowledged", "lost", "doubled", "reordered", "unacknowledged calls", "calls/s")


def _row(run: StoreRun) -> list[str]:
    tally = run.tally
    return [
        run.store,
        str(tally.acknowledged),
        str(tally.lost),
        str(tally.doubled),
        str(tally.reordered),
        str(tally.unacked_calls),
        f"{run.calls_per_second:.1f}",
    ]


def summary(campaign: Campaign) -> str:
    """A plain-text table for the terminal."""
    rows = [list(COLUMNS), *(_row(run) for run in campaign.runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines)


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(campaign: Campaign) -> str:
    work, machine = campaign.workload, campaign.machine
    lines = [INTRO, "## The last run", ""]
    lines += [
        f"- {machine.date}; {machine.cpu}, {machine.cores} cores, {machine.system}; Python "
        f"{machine.python}; Valkey {machine.valkey}" + (" (a `--quick` smoke run)" if campaign.quick else ""),
        f"- Per store: {campaign.servers} server processes, {work.clients} clients, {work.seconds:g} s, "
        f"seed {work.seed}, `STORE_TIMEOUT_SECONDS={campaign.deadline:g}`, up to {work.max_attempts} "
        f"attempts per call; {work.shared_sessions} shared sessions, {work.private_sessions} private "
        f"ones per client, {work.deleting_clients} clients delete one of their sessions once. Client "
        f"N talks to server N mod {campaign.servers}. The seed fixes every random choice, not the "
        "timing: counts vary from run to run.",
        "",
        *_table(COLUMNS, [_row(run) for run in campaign.runs]),
        "",
    ]
    for run in campaign.runs:
        tally, stats = run.tally, run.stats
        lines += [f"### {run.store}", ""]
        lines.append(
            f"Protocol spoken: retries by {run.protocol}. {stats.calls} calls ({stats.attempts} attempts, "
            f"{run.calls_per_second:.1f} calls/s), {run.sessions} sessions read back; {tally.acknowledged} "
            f"messages acknowledged."
        )
        lines.append("")
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(run.faults.items())) or "none"
        lines.append(f"- Faults injected: {faults}.")
        errors = ", ".join(f"{kind!r} {count}" for kind, count in stats.errors.most_common()) or "none"
        lines.append(f"- Tool errors seen (attempts): {errors}.")
        lines.append(
            f"- Unacknowledged: {tally.unacked_calls} calls ({stats.client_errors} of them cut by a failed "
            f"MCP connection); of their {tally.unacked_messages} unique-content messages, "
            f"{tally.unacked_stored} stored (an equal one cannot be told from others)."
        )
        lines.append(
            f"- After a delete (informational): resurrected {tally.resurrected}, erased by a delete that ran "
            f"late {tally.erased_by_late_delete}. Stored turns no client "
            f"sent: {tally.unexpected}. Stored turns carrying an `id`: {tally.turns_with_id}; "
            f"results carrying one: {stats.ids_returned}."
        )
        for kind, text in sorted(stats.error_examples.items()):
            lines.append(f"- First {kind!r} error: `{text}`")
        if tally.examples:
            lines += ["", "First findings of each kind:", ""]
            lines += [f"- {example}" for kind in sorted(tally.examples) for example in tally.examples[kind]]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
