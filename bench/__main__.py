"""Run every benchmark against servers started here, print the tables, write Markdown and a PNG plot.

python -m bench [--out bench/results] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import anyio

from bench.append_cost import exchange_cost, identity_runs, sqlite_costs, store_time, tail_reads
from bench.environment import BenchEnvironment, bench_environment
from bench.mcp_overhead import http_throughput, mcp_latency
from bench.report import Results, markdown, plot
from bench.workloads import lost_turns, save_cost


async def run_all(env: BenchEnvironment, quick: bool) -> Results:
    results = Results()
    lengths = (10, 100) if quick else (10, 100, 1000, 5000)
    results.save_costs = await save_cost(env, lengths, saves=5 if quick else 50)
    results.store_times = await store_time(env, lengths, saves=5 if quick else 100)
    results.tail_reads = await tail_reads(env, lengths, reads=5 if quick else 50)
    results.sqlite = await sqlite_costs(env, lengths, samples=5 if quick else 100)
    results.exchanges = await exchange_cost(env, samples=5 if quick else 100)
    results.identity = await identity_runs(env, saves=100)
    results.lost = await lost_turns(env, (2, 8, 32), per_writer=20)
    results.latencies = await mcp_latency(env, calls=20 if quick else 300)
    results.throughput = await http_throughput(env, (1, 8, 32), calls_per_client=10 if quick else 50)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="default: bench/results")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and samples, for a smoke run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="session-memory-bench-") as workdir,
        bench_environment(Path(workdir)) as env,
    ):
        results = anyio.run(run_all, env, args.quick)
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    plot(results, args.out / "bench.png")
    print(table)
    print(f"Wrote {args.out / 'results.md'} and {args.out / 'bench.png'}")


if __name__ == "__main__":
    main()
