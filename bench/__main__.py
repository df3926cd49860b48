"""Run every benchmark against servers started here; print the page, write it and its plot.

python -m bench                   the full run; rewrites docs/benchmarks.md and docs/bench.png
python -m bench --quick           a smoke run (fewer sizes and samples); writes bench/results/
python -m bench [--quick] --out DIR   writes DIR/benchmarks.md and DIR/bench.png only
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from bench.cluster import cluster_costs
from bench.distance import distance_latency
from bench.environment import BenchEnvironment, bench_environment
from bench.listing import index_costs
from bench.machine import Machine
from bench.mcp_overhead import mcp_overhead
from bench.reads import read_costs
from bench.report import PLOT_FILE, RESULT_FILE, Results, markdown, plot
from bench.stores import store_costs
from bench.trimming import trim_costs
from bench.valkey_time import save_commands, valkey_time
from bench.workloads import lost_turns, sqlite_costs, upstash_wire

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    """Sizes (turns already stored) and samples per figure."""

    valkey_lengths: tuple[int, ...]
    valkey_saves: int
    command_saves: int
    distance_rtts_ms: tuple[float, ...]
    distance_lengths: tuple[int, ...]
    distance_samples: int
    read_lengths: tuple[int, ...]
    read_samples: int
    mcp_calls: int
    kept_lengths: tuple[int, ...]
    wire_saves: int
    sqlite_samples: int
    store_lengths: tuple[int, ...]
    writer_counts: tuple[int, ...]
    turns_per_writer: int
    index_sizes: tuple[int, ...]
    index_samples: int
    trim_samples: int


FULL = Plan(
    valkey_lengths=(10, 100, 1000, 5000, 20000),
    valkey_saves=100,
    command_saves=3,
    distance_rtts_ms=(0, 2, 10),
    distance_lengths=(10, 1000, 5000),
    distance_samples=20,
    read_lengths=(20, 1000, 5000),
    read_samples=50,
    mcp_calls=200,
    kept_lengths=(10, 100, 1000, 5000),
    wire_saves=5,
    sqlite_samples=100,
    store_lengths=(10, 1000, 5000),
    writer_counts=(2, 8, 32),
    turns_per_writer=20,
    index_sizes=(10, 10_000),
    index_samples=30,
    trim_samples=20,
)
QUICK = Plan(
    valkey_lengths=(10, 1000),
    valkey_saves=5,
    command_saves=1,
    distance_rtts_ms=(0, 10),
    distance_lengths=(10, 1000),
    distance_samples=3,
    read_lengths=(20, 1000),
    read_samples=5,
    mcp_calls=10,
    kept_lengths=(10, 1000),
    wire_saves=2,
    sqlite_samples=5,
    store_lengths=(10, 1000),
    writer_counts=(2, 8),
    turns_per_writer=10,
    index_sizes=(10, 1000),
    index_samples=3,
    trim_samples=2,
)


def progress(step: str) -> None:
    """Say on stderr what runs now: the page itself goes to stdout at the end."""
    print(f"bench: {step}", file=sys.stderr, flush=True)


async def run_all(env: BenchEnvironment, plan: Plan, quick: bool) -> Results:
    started = time.monotonic()
    results = Results(Machine.here(env.valkey_version()), quick)
    progress("time inside Valkey per save")
    results.valkey_times = await valkey_time(env, plan.valkey_lengths, plan.valkey_saves)
    progress("commands and round trips per save")
    results.save_commands = await save_commands(env, plan.valkey_lengths, plan.command_saves)
    for backend in ("redis", "upstash"):
        progress(f"latency at a network distance, {backend}")
        results.distance += await distance_latency(
            env, backend, plan.distance_rtts_ms, plan.distance_lengths, plan.distance_samples
        )
    progress("reads")
    for backend in ("redis", "upstash"):
        results.reads += await read_costs(env, backend, plan.read_lengths, plan.read_samples)
    progress("MCP overhead")
    results.mcp = await mcp_overhead(env, plan.mcp_calls)
    progress("bytes on the wire, SQLite, lost turns")
    results.wire = await upstash_wire(env, plan.kept_lengths, plan.wire_saves)
    results.sqlite = await sqlite_costs(env, plan.kept_lengths, plan.sqlite_samples)
    progress("SQLite, Redis and PostgreSQL side by side")
    results.stores = await store_costs(env, plan.store_lengths, plan.sqlite_samples)
    results.lost = await lost_turns(env, plan.writer_counts, plan.turns_per_writer)
    progress("the session index")
    results.index = await index_costs(env, plan.index_sizes, plan.index_samples)
    progress("a save that drops the oldest turns")
    results.trim = await trim_costs(env, plan.trim_samples)
    progress("a Redis Cluster beside one node")
    results.cluster = await cluster_costs(quick)
    results.minutes = (time.monotonic() - started) / 60
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        help=f"where to write {RESULT_FILE} and {PLOT_FILE} (default: docs/, or bench/results/ with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer sizes and samples, for a smoke run")
    args = parser.parse_args()
    out: Path = args.out or REPO / ("bench/results" if args.quick else "docs")
    logging.basicConfig(level=logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="session-memory-bench-") as workdir,
        bench_environment(Path(workdir)) as env,
    ):
        results = anyio.run(run_all, env, QUICK if args.quick else FULL, args.quick)
    page = markdown(results)
    (out / RESULT_FILE).write_text(page)
    plot(results, out / PLOT_FILE)
    print(page)
    print(f"Wrote {out / RESULT_FILE} and {out / PLOT_FILE}")


if __name__ == "__main__":
    main()
