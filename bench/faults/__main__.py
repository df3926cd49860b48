"""Run the fault campaign on each store; print the summary, write the page; exit 1 on any failure.

python -m bench.faults                         both stores, 45 s each; rewrites docs/reliability.md
python -m bench.faults --store redis --seed 7  one store, another seed
python -m bench.faults --quick --out FILE      about 10 s per store with fewer clients, written to FILE
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import anyio
import redis

from bench.faults.page import RESULT_FILE, Campaign, StoreRun, markdown, summary
from bench.faults.stacks import STORES, store_stack
from bench.faults.tally import count
from bench.faults.workload import Workload, run_workload
from bench.machine import Machine

REPO = Path(__file__).resolve().parents[2]


def progress(step: str) -> None:
    print(f"faults: {step}", file=sys.stderr, flush=True)


async def run_store(store: str, campaign: Campaign, quiet_seconds: float, logs: Path) -> StoreRun:
    work = campaign.workload
    progress(f"{store}: starting the store and {campaign.servers} servers")
    with store_stack(
        store, servers=campaign.servers, deadline=campaign.deadline, seed=work.seed, logs=logs
    ) as stack:
        if not campaign.machine.valkey:
            with redis.Redis(port=stack.valkey_port) as client:
                info = client.info("server")
            campaign.machine.valkey = str(info.get("valkey_version") or info.get("redis_version") or "")
        progress(f"{store}: {work.clients} clients for {work.seconds:g} s, faults on (seed {work.seed})")
        stack.chaos.enabled = True
        started = time.monotonic()
        outcome = await run_workload(stack.base_urls, work)
        elapsed = time.monotonic() - started
        progress(f"{store}: faults off; waiting for {quiet_seconds:g} s without a request in flight")
        stack.quiesce(quiet_seconds)
        stored = stack.sessions()
        (logs / f"{store}-sessions.json").write_text(json.dumps(stored, ensure_ascii=False, indent=1))
        with (logs / "faults.tsv").open("a") as log:
            for at, kind, detail in stack.chaos.log:
                log.write(f"{store}\t{at:.3f}\t{kind}\t{detail}\n")
    tally = count(outcome.calls, stored, outcome.deletes)
    protocols = outcome.stats.protocols
    protocol = " and ".join(f"{name} ({n} connections)" for name, n in sorted(protocols.items())) or "unknown"
    return StoreRun(
        store=store,
        tally=tally,
        stats=outcome.stats,
        faults=dict(stack.chaos.counts),
        seconds=elapsed,
        sessions=len(stored),
        protocol=protocol,
    )


async def run_campaign(stores: list[str], campaign: Campaign, quiet: float, logs: Path) -> None:
    for store in stores:
        campaign.runs.append(await run_store(store, campaign, quiet, logs))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=STORES, action="append", help="a store to test (default: both)")
    parser.add_argument("--seconds", type=float, help="how long the clients save, per store (default 45)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the faults and the clients' choices")
    parser.add_argument("--clients", type=int, help="concurrent MCP clients (default 16, 6 with --quick)")
    parser.add_argument("--servers", type=int, default=3, help="server processes per store (default 3)")
    parser.add_argument(
        "--deadline", type=float, default=1.0, help="the servers' STORE_TIMEOUT_SECONDS (default 1)"
    )
    parser.add_argument("--quick", action="store_true", help="about 10 s per store, fewer clients")
    parser.add_argument("--out", type=Path, help=f"the page to write (default docs/{RESULT_FILE})")
    parser.add_argument(
        "--logs",
        type=Path,
        help="the directory for the servers' logs and faults.tsv (default: a new temp dir)",
    )
    args = parser.parse_args()
    for name in ("seconds", "clients", "servers", "deadline"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be more than 0, not {value}")

    workload = Workload(
        clients=args.clients or (6 if args.quick else 16),
        seconds=args.seconds or (10.0 if args.quick else 45.0),
        shared_sessions=3 if args.quick else 4,
        private_sessions=3 if args.quick else 6,
        deleting_clients=2 if args.quick else 4,
        seed=args.seed,
    )
    logging.basicConfig(level=logging.WARNING)
    campaign = Campaign(Machine.here(""), workload, args.servers, args.deadline, args.quick)
    logs: Path = args.logs or Path(tempfile.mkdtemp(prefix="session-memory-faults-"))
    logs.mkdir(parents=True, exist_ok=True)
    anyio.run(run_campaign, args.store or list(STORES), campaign, 3.0 if args.quick else 5.0, logs)
    page = markdown(campaign)
    out: Path = args.out or REPO / "docs" / RESULT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    print(summary(campaign))
    print(f"Wrote {out}; server logs and the fault log (faults.tsv) are in {logs}")
    sys.exit(1 if any(run.tally.failures for run in campaign.runs) else 0)


if __name__ == "__main__":
    main()
