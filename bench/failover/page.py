"""The failover runs' results: a summary table for the terminal and the page docs/failover.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.failover.rounds import POLL_SECONDS, Round
from bench.failover.writers import Plan
from bench.machine import Machine
from localservers.redis_cluster import NODE_TIMEOUT_MS

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
    "replica at the kill",
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


def _replica_state(r: Round) -> str:
    return {True: "in step", False: "link down", None: "?"}[r.replica_in_step]


def _row(r: Round) -> list[str]:
    t = r.tally
    return [
        str(r.acks),
        str(r.number),
        _replica_state(r),
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


INTRO = """\
# Failover of a Redis Cluster primary

This page is written by `python -m bench.failover`. Each round starts a Redis Cluster on this
machine (Valkey, {primaries} primaries with one replica each, `cluster-node-timeout` {node_timeout} ms),
{servers} `session-memory-mcp` processes over streamable HTTP on it
(`REDIS_URL=redis+cluster://…`, a fresh `KEY_PREFIX`, `STORE_TIMEOUT_SECONDS={deadline:g}`), and
{writers} MCP clients, {per_server} per process. Each client saves {turns} turns, one call at a time
(`save_turn`, or `save_turns` of 2 or 3 turns), into {shared} sessions shared by all clients (one of
them hot: {hot:.0%} of all calls) and {private} sessions of its own, whose ids spread them over all
hash slots. Every turn's content is unique, so each stored turn names its message. A
"Store unavailable" error is retried as the README says: the same call, with the `id` the error
names; up to {attempts} attempts, waiting up to 1 s between them.

The clients start once every replica is in step with its primary (its first copy made, its
link up). Once a third of all turns are acknowledged, the primary that serves the hot session is killed
(SIGKILL) the moment the next acknowledgement of a save into the hot session reaches its client:
nothing waits for replication first. Its replica takes over after the node timeout; as soon as
it has, the killed node is started again (as a supervisor would): it rejoins, empty, as the new
primary's replica and copies its data. When every client is done, every session is read from
every primary (SCAN, GET). A turn is **lost** when it was acknowledged and is not stored,
**doubled** when stored twice, **reordered** when one client's acknowledged turns in a session
are stored out of the order it sent them. Unacknowledged calls may or may not be stored; they
are never counted as lost.

Each run does one round with `REDIS_REPLICA_ACKS=1` (every write sends `WAIT 1` in its round
trip, and is reported stored only once a replica has it) and {zero_rounds} with `REDIS_REPLICA_ACKS=0`
(the primary's word alone). The command exits non-zero when a round at 1 lost, doubled or
reordered an acknowledged turn, or a round at 0 doubled or reordered one; a loss at 0 is what
asynchronous replication allows, and is measured here, not treated as a failure.
"""

REPRODUCE = """\
## How to reproduce

```bash
python -m bench.failover                  # one round at 1, five at 0; rewrites docs/failover.md
python -m bench.failover --rounds 10      # ten rounds at 0, to see how often a loss happens
python -m bench.failover --quick --out /tmp/failover.md   # 8 clients on 2 servers, one round each
```

The servers' logs go to a temporary directory the command names at the end, or to `--logs DIR`.
"""


def _table(header: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.1f} s" if values else "-"


def _settings(campaign: Campaign) -> list[str]:
    """What each setting cost and risked in this run, in words around its numbers."""
    ones = [r for r in campaign.rounds if r.acks == 1]
    zeros = [r for r in campaign.rounds if r.acks == 0]
    lossy = [r for r in zeros if r.tally.lost]
    ages = [-at for r in zeros for at in r.timing.lost_acked_at if at < 0]
    lines = ["## What each setting costs and risks", ""]
    if ones:
        lost = sum(r.tally.lost for r in ones)
        lines += [
            f"- **`REDIS_REPLICA_ACKS=1`**: {lost} acknowledged turns lost in {len(ones)} "
            f"round{'s' if len(ones) != 1 else ''}. "
            "A save is acknowledged only once a replica holds it, so the replica that takes over "
            "has every acknowledged turn. The cost is availability: the new primary has no replica "
            "until the killed node is back and has copied its data, and until then every save into "
            'its slots is answered "Store unavailable … only 0 of the 1 replicas … acknowledged" '
            "(stored on the primary, not yet safe; the retry with the same id stores it once). Saves "
            "into those slots were unavailable for "
            f"{_mean([r.timing.victim_outage for r in ones if r.timing.victim_outage is not None])} "
            f"on average (the replica was primary after "
            f"{_mean([r.timeline.promoted for r in ones if r.timeline.promoted is not None])}, the "
            f"killed node back after "
            f"{_mean([r.timeline.rejoined for r in ones if r.timeline.rejoined is not None])}; "
            "most of that is Valkey's `repl-diskless-sync-delay`, 5 s by default, which the new "
            "primary waits before it sends its data to the returning node). A primary with two "
            "replicas keeps saves going while one is away. Each save also waits "
            "for the replica's acknowledgement in its round trip (`python -m bench` measures what "
            "that costs: the cluster section of docs/benchmarks.md).",
        ]
    if zeros:
        outages = [r.timing.victim_outage for r in zeros if r.timing.victim_outage is not None]
        lines += [
            f"- **`REDIS_REPLICA_ACKS=0`**: acknowledged turns were lost in {len(lossy)} of "
            f"{len(zeros)} rounds ({', '.join(str(r.tally.lost) for r in zeros)} turns). "
            + (
                f"The lost turns had been acknowledged up to {max(ages) * 1000:.0f} ms before the "
                "kill: the primary answered before they had reached its replica (or before the "
                "replica had applied them), and the replica that took over never had them. "
                if ages
                else ""
            )
            + (
                ""
                if lossy
                else "None was lost here: on loopback the replica has a write within microseconds, "
                "while its acknowledgement still crosses the server process and HTTP to the client, "
                "so the kill came too late to catch one in flight. "
            )
            + "Replication is asynchronous, so the window is however far the replica lags: a "
            "network trip to it at least, more under load or while it is copying its primary's "
            "data (a replica still making its first copy has none of what the copy has yet to "
            "bring: this command waits for every replica to be in step before the clients start, "
            "and measures that steady state). In exchange, saves into the killed primary's slots were "
            f"unavailable only until the replica took over: {_mean(outages)} on average, with "
            f"`cluster-node-timeout` {NODE_TIMEOUT_MS} ms.",
        ]
    lines += [
        "- Either way, saves into the other primaries' slots went on; the unavailable answers they "
        'got are counted in the table ("others"). A call that met an unavailable answer was '
        "acknowledged after its retries; the longest such call is in the table.",
        "",
    ]
    return lines


def markdown(campaign: Campaign) -> str:
    plan, machine = campaign.plan, campaign.machine
    zero_rounds = sum(r.acks == 0 for r in campaign.rounds)
    intro = INTRO.format(
        primaries=3,
        node_timeout=NODE_TIMEOUT_MS,
        servers=plan.servers,
        deadline=campaign.deadline,
        writers=plan.writers,
        per_server=plan.writers_per_server,
        turns=plan.turns_per_writer,
        shared=plan.shared_sessions,
        hot=plan.hot_share,
        private=plan.private_sessions,
        attempts=plan.max_attempts,
        zero_rounds=f"{zero_rounds} round" + ("s" if zero_rounds != 1 else ""),
    )
    lines = [intro, "## The last run", ""]
    lines += [
        f"- {machine.date}; {machine.cpu}, {machine.cores} cores, {machine.system}; Python "
        f"{machine.python}; Valkey {machine.valkey}" + (" (a `--quick` smoke run)" if campaign.quick else ""),
        f'- {plan.turns} turns per round, seed {plan.seed}; times are seconds after the kill. "Replica '
        'at the kill": its link to its primary as last seen, at most '
        f'{POLL_SECONDS * 1000:.0f} ms before the kill. "Killed slots unavailable for": from the kill '
        "to the first acknowledged save into the killed primary's slots that was sent after it.",
        "",
        *_table(COLUMNS, [_row(r) for r in campaign.rounds]),
        "",
        *_settings(campaign),
        "## Each round",
        "",
    ]
    for r in campaign.rounds:
        tally, stats = r.tally, r.stats
        lines += [f"### `REDIS_REPLICA_ACKS={r.acks}`, round {r.number}", ""]
        lines.append(
            f"{stats.calls} calls ({stats.attempts} attempts) in {r.seconds:.1f} s; {r.sessions_read} "
            f"sessions read back, {r.victim_sessions} of them on the killed primary; the kill came after "
            f"{r.killed_after_turns} acknowledged turns."
        )
        lines.append("")
        timeline = r.timeline
        lines.append(
            f"- After the kill: replica primary at {_seconds(timeline.promoted)}, killed node started "
            f"again at {_seconds(timeline.restarted)}, replicating again at {_seconds(timeline.rejoined)}"
            + (f"; the watcher failed: {timeline.error}" if timeline.error else "")
            + f". The replica serves the slots afterwards: {'yes' if r.replica_was_primary else 'no'}."
        )
        span = r.timing.unavailable_span
        if span is not None:
            lines.append(
                f"- Unavailable answers from {span[0]:.2f} s to {span[1]:.2f} s after the kill; "
                f"{r.timing.delayed_calls} calls acknowledged after one, the longest after "
                f"{r.timing.longest_delay:.2f} s."
            )
        if r.timing.lost_acked_at:
            ages = ", ".join(f"{at * 1000:+.0f}" for at in r.timing.lost_acked_at)
            lines.append(f"- Lost turns were acknowledged at (ms from the kill): {ages}.")
        errors = ", ".join(f"{kind!r} {n}" for kind, n in stats.errors.most_common()) or "none"
        lines.append(f"- Tool errors seen (attempts): {errors}.")
        lines.append(
            f"- Unacknowledged: {tally.unacked_calls} calls ({stats.client_errors} cut by a failed MCP "
            f"connection); of their {tally.unacked_messages} turns, {tally.unacked_stored} stored. "
            f"Stored turns no client sent: {tally.unexpected}."
        )
        for kind, text in sorted(stats.error_examples.items()):
            lines.append(f"- First {kind!r} error: `{text}`")
        if tally.examples:
            lines += ["", "First findings of each kind:", ""]
            lines += [f"- {example}" for kind in sorted(tally.examples) for example in tally.examples[kind]]
        lines.append("")
    lines.append(REPRODUCE)
    return "\n".join(lines).rstrip() + "\n"
