"""The writers: MCP clients that each save a fixed number of turns, retrying as the README says.

Each writer talks to one server process over streamable HTTP and sends one call at a time
(save_turn, or save_turns of 2 or 3 turns), some into sessions shared with every other writer
(one of them hot) and the others into sessions of its own, whose ids spread them over all hash
slots. Every turn's content is unique, so that each stored turn names the message it came from.
A "Store unavailable" error is retried with the same call and the `id` the error names; every
attempt is logged with its start and end, for the timeline around the failover.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import Client

from bench.faults.tally import Call, Message
from bench.faults.workload import (
    CLIENT_CLOCK_BASE,
    CLIENT_CLOCK_SPAN,
    CLIENT_TIMEOUT_SECONDS,
    UNAVAILABLE,
    ClientStats,
    connect,
    error_kind,
    error_text,
    result_timestamps,
    retry_arguments,
    speaks_new_protocol,
)

HOT = "shared-0"


@dataclass(frozen=True)
class Plan:
    servers: int = 5
    writers_per_server: int = 10
    turns_per_writer: int = 20
    shared_sessions: int = 3
    private_sessions: int = 4
    hot_share: float = 0.3  # of a writer's calls, into the hot session
    shared_share: float = 0.15  # into any shared session, the hot one included
    max_attempts: int = 80  # far more than a failover and a replica's return need
    seed: int = 1

    @property
    def writers(self) -> int:
        return self.servers * self.writers_per_server

    @property
    def turns(self) -> int:
        return self.writers * self.turns_per_writer

    def sessions(self) -> list[str]:
        shared = [f"shared-{n}" for n in range(self.shared_sessions)]
        return shared + [
            private_session(w, n) for w in range(self.writers) for n in range(self.private_sessions)
        ]


def private_session(writer: int, n: int) -> str:
    return f"w{writer}-p{n}"


@dataclass(frozen=True)
class Attempt:
    session: str
    started: float  # time.monotonic()
    ended: float
    outcome: str  # "ok", "unavailable", or another error's heading


@dataclass
class Outcome:
    calls: list[Call] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    # (first attempt's start, acknowledgement, session) of every call that met an unavailable error
    delayed: list[tuple[float, float, str]] = field(default_factory=list)
    acked_at: dict[str, float] = field(
        default_factory=dict
    )  # a message's content -> its call's acknowledgement
    stats: ClientStats = field(default_factory=ClientStats)


# Told of each acknowledged call: its session and how many turns it saved.
Acked = Callable[[str, int], None]


class Writer:
    def __init__(self, index: int, base_url: str, plan: Plan, outcome: Outcome, acked: Acked) -> None:
        self.index = index
        self.base_url = base_url
        self.plan = plan
        self.outcome = outcome
        self.acked = acked
        self.stats = ClientStats()
        self.rng = random.Random(plan.seed * 1000 + index)
        self.seq = 0
        self.clock = CLIENT_CLOCK_BASE + index * CLIENT_CLOCK_SPAN
        self.shared = [f"shared-{n}" for n in range(plan.shared_sessions)]
        self.private = [private_session(index, n) for n in range(plan.private_sessions)]

    async def run(self) -> None:
        left = self.plan.turns_per_writer
        try:
            async with connect(self.base_url) as client:
                new_protocol = await speaks_new_protocol(client)
                self.stats.protocols["id" if new_protocol else "timestamp"] += 1
                while left > 0:
                    size = min(left, self.rng.choice((2, 3)) if self.rng.random() < 0.5 else 1)
                    await self.save(client, new_protocol, size)
                    left -= size
        except Exception:  # the MCP connection failed: the call in flight stays unacknowledged
            self.stats.client_errors += 1
        self.outcome.stats.add(self.stats)

    def _session(self) -> str:
        point = self.rng.random()
        if point < self.plan.hot_share:
            return HOT
        if point < self.plan.hot_share + self.plan.shared_share:
            return self.rng.choice(self.shared)
        return self.rng.choice(self.private)

    def _message(self, session: str) -> tuple[Message, dict[str, Any]]:
        self.seq += 1
        role = self.rng.choice(("user", "assistant"))
        content = f"w{self.index} n{self.seq}: {self.rng.getrandbits(32):08x}"
        turn: dict[str, Any] = {"role": role, "content": content}
        if self.rng.random() < 0.5:
            self.clock += 1
            turn["timestamp"] = self.clock
        return Message(self.index, session, self.seq, role, content, equal=False), turn

    async def save(self, client: Client, new_protocol: bool, size: int) -> None:
        """One call of `size` turns, with its retries, recorded in the outcome."""
        session = self._session()
        sent = [self._message(session) for _ in range(size)]
        if size > 1 or self.rng.random() < 0.3:
            tool, arguments = "save_turns", {"session_id": session, "turns": [turn for _, turn in sent]}
        else:
            tool, arguments = "save_turn", {"session_id": session, **sent[0][1]}
        if new_protocol and self.rng.random() < 0.3:
            arguments["id"] = f"{self.rng.getrandbits(128):032x}"
        call = Call([message for message, _ in sent], acked=False, attempts=0)
        self.outcome.calls.append(call)
        self.stats.calls += 1
        first = time.monotonic()
        unavailable = False
        for attempt in range(1, self.plan.max_attempts + 1):
            call.attempts = attempt
            self.stats.attempts += 1
            started = time.monotonic()
            result = await client.call_tool(tool, arguments, read_timeout_seconds=CLIENT_TIMEOUT_SECONDS)
            ended = time.monotonic()
            if not result.is_error:
                call.acked = True
                structured = result.structured_content or {}
                self.stats.ids_returned += "id" in structured
                call.timestamps = result_timestamps(structured)
                self.outcome.attempts.append(Attempt(session, started, ended, "ok"))
                for message, _ in sent:
                    self.outcome.acked_at[message.content] = ended
                if unavailable:
                    self.outcome.delayed.append((first, ended, session))
                self.acked(session, size)
                return
            text = error_text(result)
            self.stats.error(error_kind(text), text)
            if not text.startswith(UNAVAILABLE):
                self.outcome.attempts.append(Attempt(session, started, ended, error_kind(text)))
                return
            unavailable = True
            self.outcome.attempts.append(Attempt(session, started, ended, "unavailable"))
            arguments = retry_arguments(arguments, text, new_protocol=new_protocol)
            await anyio.sleep(min(1.0, 0.05 * 2.0 ** (attempt - 1)) * self.rng.uniform(0.5, 1.0))


async def run_writers(base_urls: list[str], plan: Plan, acked: Acked) -> Outcome:
    """`plan.writers` writers, writer N on server N mod len(base_urls), until each has saved its turns."""
    outcome = Outcome()
    async with anyio.create_task_group() as group:
        for index in range(plan.writers):
            group.start_soon(Writer(index, base_urls[index % len(base_urls)], plan, outcome, acked).run)
    return outcome
