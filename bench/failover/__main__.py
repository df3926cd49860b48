"""Kill a Redis Cluster primary while MCP clients save, with REDIS_REPLICA_ACKS=1 and =0; count
what acknowledged turns survive. Exit 1 when a round at 1 lost, doubled or reordered one, or
a round at 0 doubled or reordered one (a loss at 0 is measured, not a failure).

python -m bench.failover                    5 servers, 50 writers, one round at 1 and five at 0;
                                            rewrites docs/failover.md
python -m bench.failover --rounds 10        ten rounds at REDIS_REPLICA_ACKS=0
python -m bench.failover --quick --out FILE a smaller run, written to FILE
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import anyio
import redis

from bench.failover.page import RESULT_FILE, Campaign, markdown, summary
from bench.failover.rounds import run_round
from bench.failover.writers import Plan
from bench.machine import Machine
from localservers.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]
FULL = Plan()
QUICK = Plan(servers=2, writers_per_server=4, turns_per_writer=12, private_sessions=3)


def progress(step: str) -> None:
    print(f"failover: {step}", file=sys.stderr, flush=True)


async def run_campaign(campaign: Campaign, rounds_at_zero: int, logs: Path) -> None:
    plan = campaign.plan
    for acks, number in [(1, 1), *((0, n) for n in range(1, rounds_at_zero + 1))]:
        progress(
            f"REDIS_REPLICA_ACKS={acks}, round {number}: a cluster, {plan.servers} servers, "
            f"{plan.writers} writers of {plan.turns_per_writer} turns each"
        )
        done = await run_round(plan, acks, number, campaign.deadline, logs)
        campaign.rounds.append(done)
        progress(summary([done]).splitlines()[-1])


def valkey_version() -> str:
    server = RedisServer().start()
    try:
        with redis.Redis(port=server.port) as client:
            info = client.info("server")
        return str(info.get("valkey_version") or info.get("redis_version") or "")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 servers, 8 writers of 12 turns, a round at 1 and at 0",
    )
    parser.add_argument("--rounds", type=int, help="rounds at REDIS_REPLICA_ACKS=0 (5; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the writers' choices")
    parser.add_argument(
        "--deadline", type=float, default=1.0, help="the servers' STORE_TIMEOUT_SECONDS (default 1)"
    )
    parser.add_argument("--out", type=Path, help=f"the page to write (default docs/{RESULT_FILE})")
    parser.add_argument("--logs", type=Path, help="the directory for the servers' logs (a new temp dir)")
    args = parser.parse_args()
    for name in ("rounds", "deadline"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be more than 0, not {value}")
    base = QUICK if args.quick else FULL
    plan = Plan(**{**base.__dict__, "seed": args.seed})
    logging.basicConfig(level=logging.WARNING)
    campaign = Campaign(Machine.here(valkey_version()), plan, args.deadline, args.quick)
    logs: Path = args.logs or Path(tempfile.mkdtemp(prefix="session-memory-failover-"))
    logs.mkdir(parents=True, exist_ok=True)
    anyio.run(run_campaign, campaign, args.rounds or (1 if args.quick else 5), logs)
    out: Path = args.out or REPO / "docs" / RESULT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(campaign))
    print(summary(campaign.rounds))
    print(f"Wrote {out}; the servers' logs are in {logs}")
    sys.exit(1 if campaign.failures else 0)


if __name__ == "__main__":
    main()
