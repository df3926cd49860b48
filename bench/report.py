"""The benchmark tables (Markdown) and plot (PNG)."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render straight to a file
import matplotlib.pyplot as plt
from matplotlib import ticker

from bench.append_cost import ExchangeCost, IdentityRun, SQLiteCost, StoreTime, TailRead
from bench.mcp_overhead import CallLatency, Throughput
from bench.workloads import BASELINE_UPSTASH, OURS_SQLITE, OURS_UPSTASH, LostTurns, SaveCost


@dataclass
class Results:
    save_costs: list[SaveCost] = field(default_factory=list)
    lost: list[LostTurns] = field(default_factory=list)
    latencies: list[CallLatency] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    store_times: list[StoreTime] = field(default_factory=list)
    tail_reads: list[TailRead] = field(default_factory=list)
    sqlite: list[SQLiteCost] = field(default_factory=list)
    exchanges: list[ExchangeCost] = field(default_factory=list)
    identity: list[IdentityRun] = field(default_factory=list)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {sys.version.split()[0]}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: Results) -> str:
    parts = [f"Measured on {machine()}; Valkey and the Upstash REST gateway on loopback.", ""]
    parts += [
        "**Save cost as the session grows** (turns of about 500 bytes; bytes are whole HTTP messages)",
        "",
        _table(
            [
                "turns stored",
                "approach",
                "round trips",
                "bytes sent",
                "bytes received",
                "billed commands",
                "median ms",
                "p99 ms",
            ],
            [
                [
                    f"{c.session_turns:,}",
                    c.approach,
                    f"{c.round_trips:g}" if c.approach != OURS_SQLITE else "-",
                    f"{c.request_bytes:,.0f}" if c.approach != OURS_SQLITE else "-",
                    f"{c.response_bytes:,.0f}" if c.approach != OURS_SQLITE else "-",
                    f"{c.billed_commands:g}" if c.billed_commands is not None else "-",
                    f"{c.median_ms:.2f}",
                    f"{c.p99_ms:.2f}",
                ]
                for c in results.save_costs
            ],
        ),
        "",
        "**Time inside Valkey per save** (median of its SLOWLOG; the floor is a bare Lua GET + "
        "concatenate + SET of the same value; a list is RPUSH + EXPIRE, for reference)",
        "",
        _table(
            ["turns stored", "ours µs", "floor µs", "ours / floor", "list µs"],
            [
                [
                    f"{t.session_turns:,}",
                    f"{t.ours_us:,.0f}",
                    f"{t.floor_us:,.0f}",
                    f"{t.ratio:.2f}",
                    f"{t.list_us:,.0f}",
                ]
                for t in results.store_times
            ],
        ),
        "",
        "**get_session(last=20) on Upstash** (bytes are whole HTTP responses; a 20-turn session read "
        "whole is the yardstick)",
        "",
        _table(
            [
                "turns stored",
                "round trips",
                "billed commands",
                "bytes received",
                "vs a 20-turn read",
                "median ms",
            ],
            [
                [
                    f"{r.session_turns:,}",
                    f"{r.round_trips:g}",
                    f"{r.billed_commands:g}",
                    f"{r.response_bytes:,.0f}",
                    f"{r.response_bytes / r.whole_20_bytes:.2f}x",
                    f"{r.median_ms:.2f}",
                ]
                for r in results.tail_reads
            ],
        ),
        "",
        "**SQLite as the session grows** (one row per turn)",
        "",
        _table(
            ["turns stored", "save median ms", "last=20 median ms"],
            [
                [f"{c.session_turns:,}", f"{c.save_median_ms:.2f}", f"{c.last_20_median_ms:.2f}"]
                for c in results.sqlite
            ],
        ),
        "",
        "**One exchange (user + assistant) on Upstash**",
        "",
        _table(
            ["approach", "round trips", "billed commands", "median ms"],
            [
                [e.approach, f"{e.round_trips:g}", f"{e.billed_commands:g}", f"{e.median_ms:.2f}"]
                for e in results.exchanges
            ],
        ),
        "",
        "**The identity rule under concurrency** (concurrent saves of the text `ok` to one session)",
        "",
        _table(
            ["backend", "case", "saves", "turns kept"],
            [[r.backend, r.case, str(r.saves), str(r.kept)] for r in results.identity],
        ),
        "",
        "**Lost turns under concurrency** (each writer saves 20 turns to the same session)",
        "",
        _table(
            ["writers", "approach", "turns sent", "turns stored", "lost"],
            [
                [str(r.writers), r.approach, str(r.sent), str(r.stored), str(r.sent - r.stored)]
                for r in results.lost
            ],
        ),
        "",
        "**MCP overhead** (Upstash store through the gateway; the no-op tool is the SDK's floor)",
        "",
        _table(
            ["transport", "call", "median ms", "p99 ms"],
            [[r.transport, r.call, f"{r.median_ms:.2f}", f"{r.p99_ms:.2f}"] for r in results.latencies],
        ),
        "",
        "**Throughput over streamable HTTP** (save_turn, each client on its own session)",
        "",
        _table(
            ["clients", "calls", "calls per second"],
            [[str(t.clients), str(t.calls), f"{t.calls_per_second:,.0f}"] for t in results.throughput],
        ),
    ]
    return "\n".join(parts) + "\n"


def plot(results: Results, path: Path) -> None:
    figure, (wire, latency, lost) = plt.subplots(1, 3, figsize=(16, 4.8))
    styles = {
        OURS_UPSTASH: ("tab:green", "o"),
        BASELINE_UPSTASH: ("tab:red", "s"),
        OURS_SQLITE: ("tab:blue", "^"),
    }
    for approach, (color, marker) in styles.items():
        costs = [c for c in results.save_costs if c.approach == approach]
        turns = [c.session_turns for c in costs]
        if approach != OURS_SQLITE:
            wire.plot(
                turns,
                [c.request_bytes + c.response_bytes for c in costs],
                marker=marker,
                color=color,
                label=approach,
            )
        latency.plot(turns, [c.median_ms for c in costs], marker=marker, color=color, label=approach)
    for axes, title, unit in (
        (wire, "Bytes on the wire per save", "bytes (request + response)"),
        (latency, "Median latency per save", "ms"),
    ):
        axes.set(xscale="log", yscale="log", xlabel="turns already in the session", ylabel=unit, title=title)
        axes.grid(True, which="both", alpha=0.3)
        axes.yaxis.set_major_formatter(
            ticker.FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")
        )
        axes.legend()
    writer_counts = sorted({r.writers for r in results.lost})
    width = 0.8 / len(styles)
    for offset, (approach, (color, _)) in enumerate(styles.items()):
        rows = {r.writers: r for r in results.lost if r.approach == approach}
        positions = [i + offset * width for i in range(len(writer_counts))]
        bars = lost.bar(
            positions,
            [rows[w].sent - rows[w].stored for w in writer_counts],
            width,
            color=color,
            label=approach,
        )
        lost.bar_label(bars)  # labels the zeros, which have no visible bar
    lost.set_xticks([i + width for i in range(len(writer_counts))], [f"{w} writers" for w in writer_counts])
    lost.set(title="Turns lost by concurrent writers", ylabel="turns sent minus turns stored")
    lost.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
