"""One round: a fresh cluster, the servers on it, the writers, one primary killed mid-run.

The primary that serves the hot session is SIGKILLed from the writers' own event loop the moment
an acknowledgement of a save into that session arrives once a third of all turns are
acknowledged: nothing waits for replication first. A thread then watches the primary's replica
until it says it is primary, starts the killed node again (it rejoins as the new primary's
replica, as a supervisor would restart it) and waits for its replication link. When every writer
is done, every session is read from every primary and compared with what was acknowledged.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.failover.writers import HOT, Attempt, Outcome, Plan, run_writers
from bench.faults.stacks import http_server, server_env
from bench.faults.tally import Tally, count
from bench.faults.workload import ClientStats
from localservers.redis_cluster import RedisCluster, replicating
from memory import session_key

# How often the watcher asks the replica whether it is primary yet.
POLL_SECONDS = 0.02


@dataclass
class Timeline:
    """Seconds after the kill; None when it did not happen."""

    promoted: float | None = None
    restarted: float | None = None
    rejoined: float | None = None
    error: str | None = None


@dataclass
class Timing:
    """What the writers saw around the kill; times in seconds after it."""

    # Saves into the killed primary's slots: from the kill to the first acknowledged attempt
    # sent after it.
    victim_outage: float | None
    unavailable_victim: int  # attempts answered "Store unavailable", into the killed primary's slots
    unavailable_other: int  # the same, into the other primaries' slots
    unavailable_span: tuple[float, float] | None  # first and last such answer, after the kill
    # When each acknowledged turn missing from the store was acknowledged
    lost_acked_at: list[float]
    delayed_calls: int  # calls acknowledged after at least one unavailable answer
    longest_delay: float  # the longest of those, from its first attempt to its acknowledgement


@dataclass
class Round:
    acks: int
    number: int
    tally: Tally
    stats: ClientStats
    seconds: float
    sessions_read: int
    killed_after_turns: int
    victim_sessions: int
    timeline: Timeline
    timing: Timing
    replica_was_primary: bool  # the killed primary's replica serves its slots afterwards
    replica_in_step: bool | None  # its link to the primary was up when last seen before the kill


class Watcher:
    """Waits for the replica to take over, restarts the killed node, waits for it to rejoin."""

    def __init__(self, cluster: RedisCluster, victim: int, replica: int) -> None:
        self.cluster, self.victim, self.replica = cluster, victim, replica
        self.timeline = Timeline()
        self.killed_at = 0.0
        self.replica_in_step: bool | None = None
        self._thread: threading.Thread | None = None
        self._sampler: threading.Thread | None = None
        self._killing = threading.Event()

    def sample(self) -> None:
        """Note, every POLL_SECONDS until the kill, whether the replica's link is up (asking at
        the moment of the kill would delay it)."""

        def run() -> None:
            while not self._killing.is_set():
                try:
                    seen = replicating(self.replica)
                except (OSError, RuntimeError):
                    seen = False
                if not self._killing.is_set():  # else the kill may have come first
                    self.replica_in_step = seen
                time.sleep(POLL_SECONDS)

        self._sampler = threading.Thread(target=run, name="replica-sampler", daemon=True)
        self._sampler.start()

    def kill(self) -> None:
        self._killing.set()
        self.killed_at = time.monotonic()
        self.cluster.kill(self.victim)
        self._thread = threading.Thread(target=self._watch, name="failover-watcher", daemon=True)
        self._thread.start()

    @property
    def killed(self) -> bool:
        return self._thread is not None

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._sampler is not None:
            self._sampler.join()

    def _since(self) -> float:
        return time.monotonic() - self.killed_at

    def _watch(self) -> None:
        try:
            self._until(lambda: self.cluster.role(self.replica) == "master")
            self.timeline.promoted = self._since()
            self.cluster.restart(self.victim)
            self.timeline.restarted = self._since()
            self._until(lambda: self.cluster.role(self.victim) == "slave" and replicating(self.victim))
            self.timeline.rejoined = self._since()
            self.cluster.wait_until_ok()
        except Exception as exc:  # reported on the page, and the round fails
            self.timeline.error = f"{type(exc).__name__}: {exc}"

    def _until(self, condition: object, patience: float = 120.0) -> None:
        assert callable(condition)
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except (OSError, RuntimeError, StopIteration):
                pass
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"the cluster did not get there within {patience:g} s")


async def run_round(plan: Plan, acks: int, number: int, deadline: float, logs: Path) -> Round:
    """One round with REDIS_REPLICA_ACKS=`acks`; the servers' logs go to `logs`."""
    cluster = RedisCluster().start()
    try:
        # A replica still copying its primary's data when the kill lands would lose what it has
        # yet to copy: not the window this measures.
        cluster.wait_until_replicating()
        return await _with_cluster(cluster, plan, acks, number, deadline, logs)
    finally:
        cluster.stop()


async def _with_cluster(
    cluster: RedisCluster,
    plan: Plan,
    acks: int,
    number: int,
    deadline: float,
    logs: Path,
) -> Round:
    key_prefix = f"failover-{acks}-{number}-{uuid.uuid4().hex[:8]}:"
    env = server_env({"REDIS_URL": cluster.url}, deadline, key_prefix) | {"REDIS_REPLICA_ACKS": str(acks)}
    victim = cluster.primary_for(session_key(key_prefix, HOT))
    replica = cluster.replica_of(victim)
    victim_sessions = {
        session
        for session in plan.sessions()
        if cluster.primary_for(session_key(key_prefix, session)) == victim
    }
    watcher = Watcher(cluster, victim, replica)
    threshold = plan.turns // 3
    acked_turns = 0
    killed_after = 0

    def acked(session: str, turns: int) -> None:
        nonlocal acked_turns, killed_after
        acked_turns += turns
        if not watcher.killed and acked_turns >= threshold and session == HOT:
            killed_after = acked_turns
            watcher.kill()

    with ExitStack() as stack:
        urls = [
            stack.enter_context(http_server(env, logs / f"acks{acks}-round{number}-server-{n}.log"))
            for n in range(plan.servers)
        ]
        watcher.sample()
        started = time.monotonic()
        outcome = await run_writers(urls, plan, acked)
        seconds = time.monotonic() - started
    if not watcher.killed:
        raise RuntimeError(
            "the writers finished before the kill: no save into the hot session came late enough"
        )
    watcher.join()
    stored = cluster.sessions(key_prefix)
    return Round(
        acks=acks,
        number=number,
        tally=count(outcome.calls, stored, {}),
        stats=outcome.stats,
        seconds=seconds,
        sessions_read=len(stored),
        killed_after_turns=killed_after,
        victim_sessions=len(victim_sessions),
        timeline=watcher.timeline,
        replica_was_primary=cluster.role(replica) == "master",
        replica_in_step=watcher.replica_in_step,
        timing=_timing(outcome, stored, victim_sessions, watcher.killed_at),
    )


def _timing(
    outcome: Outcome, stored: dict[str, list[dict[str, Any]]], victim_sessions: set[str], killed_at: float
) -> Timing:
    unavailable = [attempt for attempt in outcome.attempts if attempt.outcome == "unavailable"]
    after_kill: list[Attempt] = sorted(
        (
            a
            for a in outcome.attempts
            if a.outcome == "ok" and a.session in victim_sessions and a.started > killed_at
        ),
        key=lambda a: a.ended,
    )
    delays = [acked - first for first, acked, _ in outcome.delayed]
    found = {str(turn.get("content")) for turns in stored.values() for turn in turns}
    lost = sorted(at - killed_at for content, at in outcome.acked_at.items() if content not in found)
    return Timing(
        victim_outage=after_kill[0].ended - killed_at if after_kill else None,
        unavailable_victim=sum(a.session in victim_sessions for a in unavailable),
        unavailable_other=sum(a.session not in victim_sessions for a in unavailable),
        unavailable_span=(
            (min(a.ended for a in unavailable) - killed_at, max(a.ended for a in unavailable) - killed_at)
            if unavailable
            else None
        ),
        lost_acked_at=lost,
        delayed_calls=len(delays),
        longest_delay=max(delays, default=0.0),
    )
