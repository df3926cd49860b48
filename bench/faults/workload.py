"""The campaign's MCP clients: save_turn and save_turns calls, retried as the README documents.

Each client talks to one server process over streamable HTTP and sends one call at a time, into
a few sessions shared with clients on the other servers and many of its own. A tool error saying
the store was unavailable is retried, the same call again: with the `id` the error names when the
server publishes an `id` parameter (and the timestamps the first attempt had, no others), else
with the timestamps the error names.
"""

from __future__ import annotations

import collections
import copy
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from bench.faults.tally import Call, Message

EQUAL_CONTENTS = ("ok", "yes", "thanks")
# "ok" more often than the others, and always from the user in a shared session: equal turns
# stamped in the same millisecond by different server processes are where the races are. The
# hot session (the first shared one) gets a quarter of all calls, nearly all of them a user's
# "ok" without a timestamp, so such coincidences happen often enough to meet a fault.
EQUAL_WEIGHTS = (4, 1, 1)
HOT_SHARE = 0.25
UNAVAILABLE = "Store unavailable"
ID_IN_ERROR = re.compile(r'id "([A-Za-z0-9._:-]+)"')
TIMESTAMPS_IN_ERROR = re.compile(r"retry with timestamps? (?:\(in order\) )?(\d+(?:, \d+)*)")
# Far longer than a server's store deadline with its retries: a client never gives up first.
CLIENT_TIMEOUT_SECONDS = 120.0
# Client timestamps live in a range of their own, per client (2017-2018 in ms), so that no
# two clients' turns, nor a client's and a server-clock turn, can share one by chance: equal
# role, content and timestamp is, by the identity rule, the same turn.
CLIENT_CLOCK_BASE = 1_500_000_000_000
CLIENT_CLOCK_SPAN = 1_000_000_000


@dataclass(frozen=True)
class Workload:
    clients: int = 16
    seconds: float = 45.0
    shared_sessions: int = 4
    private_sessions: int = 6
    deleting_clients: int = 4  # clients 0..n-1 delete a session of their own once, mid-run
    max_attempts: int = 20
    seed: int = 1


@dataclass
class ClientStats:
    calls: int = 0
    attempts: int = 0
    client_errors: int = 0  # the MCP connection itself failed: the call is unacknowledged
    ids_returned: int = 0  # successful results carrying structuredContent["id"]
    protocols: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_examples: dict[str, str] = field(default_factory=dict)  # kind -> the first full text

    def error(self, kind: str, text: str) -> None:
        self.errors[kind] += 1
        self.error_examples.setdefault(kind, text)

    def add(self, other: ClientStats) -> None:
        self.calls += other.calls
        self.attempts += other.attempts
        self.client_errors += other.client_errors
        self.ids_returned += other.ids_returned
        self.protocols.update(other.protocols)
        self.errors.update(other.errors)
        for kind, text in other.error_examples.items():
            self.error_examples.setdefault(kind, text)


@dataclass
class Outcome:
    calls: list[Call] = field(default_factory=list)
    deletes: dict[str, int] = field(default_factory=dict)  # session -> acknowledged deletes
    stats: ClientStats = field(default_factory=ClientStats)


def retry_arguments(arguments: dict[str, Any], error: str, *, new_protocol: bool) -> dict[str, Any]:
    """The arguments for retrying a save whose attempt failed with `error`, as the README says."""
    retry = copy.deepcopy(arguments)
    if new_protocol:
        named = ID_IN_ERROR.search(error)
        if named is not None:
            retry["id"] = named.group(1)
        return retry
    stamps = TIMESTAMPS_IN_ERROR.search(error)
    if stamps is not None:
        values = [int(value) for value in stamps.group(1).split(", ")]
        if "turns" in retry:
            for turn, value in zip(retry["turns"], values, strict=False):
                turn["timestamp"] = value
        else:
            retry["timestamp"] = values[0]
    return retry


def result_timestamps(structured: dict[str, Any]) -> list[int] | None:
    """The timestamps a save_turn or save_turns result gives its turns, in order."""
    if isinstance(structured.get("timestamp"), int):
        return [structured["timestamp"]]
    turns = structured.get("turns")
    if isinstance(turns, list) and all(isinstance(turn, dict) for turn in turns):
        return [turn["timestamp"] for turn in turns if isinstance(turn.get("timestamp"), int)]
    return None


SDK_PREFIX = re.compile(r"^Error executing tool \w+: ")


def error_text(result: CallToolResult) -> str:
    """A tool error's message, without the `Error executing tool NAME: ` the SDK puts in front."""
    text = " ".join(part.text for part in result.content if isinstance(part, TextContent))
    return SDK_PREFIX.sub("", text, count=1)


def error_kind(text: str) -> str:
    """The heading of a tool error (`Store unavailable`), for counting kinds."""
    return text.partition(":")[0][:80] or "(empty)"


@asynccontextmanager
async def connect(base_url: str) -> AsyncIterator[Client]:
    timeout = httpx2.Timeout(CLIENT_TIMEOUT_SECONDS)
    async with (
        httpx2.AsyncClient(timeout=timeout) as http,
        Client(
            streamable_http_client(f"{base_url}/mcp", http_client=http),
            read_timeout_seconds=CLIENT_TIMEOUT_SECONDS,
        ) as client,
    ):
        yield client


async def speaks_new_protocol(client: Client) -> bool:
    """Whether save_turn and save_turns take an `id` (the per-call id protocol)."""
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    return all("id" in tools[name].input_schema.get("properties", {}) for name in ("save_turn", "save_turns"))


class CampaignClient:
    def __init__(self, index: int, base_url: str, workload: Workload, outcome: Outcome) -> None:
        self.index = index
        self.base_url = base_url
        self.workload = workload
        self.outcome = outcome
        self.stats = ClientStats()
        self.rng = random.Random(workload.seed * 1000 + index)
        self.seq = 0
        self.clock = CLIENT_CLOCK_BASE + index * CLIENT_CLOCK_SPAN
        self.shared = [f"shared-{n}" for n in range(workload.shared_sessions)]
        self.private = [f"c{index}-p{n}" for n in range(workload.private_sessions)]
        self.deletable = f"c{index}-d" if index < workload.deleting_clients else None
        self.epochs: collections.Counter[str] = collections.Counter()

    async def run(self, stop_at: float) -> None:
        delete_at = time.monotonic() + (stop_at - time.monotonic()) * self.rng.uniform(0.3, 0.7)
        deleted = self.deletable is None
        while time.monotonic() < stop_at:
            try:
                async with connect(self.base_url) as client:
                    new_protocol = await speaks_new_protocol(client)
                    self.stats.protocols["id" if new_protocol else "timestamp"] += 1
                    while time.monotonic() < stop_at:
                        if not deleted and time.monotonic() >= delete_at:
                            await self._delete(client)
                            deleted = True
                        await self.save(client, new_protocol)
            except Exception:  # the MCP connection failed: count it, reconnect
                self.stats.client_errors += 1
                await anyio.sleep(0.2)
        self.outcome.stats.add(self.stats)

    async def _delete(self, client: Client) -> None:
        """Delete the client's deletable session, retrying; later saves belong to a new epoch.

        A delete that never succeeded still starts one: it may yet run, late, and what it then
        erases is counted as such, not as lost.
        """
        assert self.deletable is not None
        for attempt in range(1, self.workload.max_attempts + 1):
            result = await client.call_tool("delete_session", {"session_id": self.deletable})
            if not result.is_error:
                break
            text = error_text(result)
            self.stats.error(f"delete_session: {error_kind(text)}", text)
            await anyio.sleep(self._backoff(attempt))
        self.epochs[self.deletable] += 1
        self.outcome.deletes[self.deletable] = self.epochs[self.deletable]

    def _session(self) -> str:
        point = self.rng.random()
        if point < HOT_SHARE:
            return self.shared[0]
        if point < HOT_SHARE + 0.2:
            return self.rng.choice(self.shared)
        if point < HOT_SHARE + 0.3 and self.deletable is not None:
            return self.deletable
        return self.rng.choice(self.private)

    def _timestamp(self) -> int:
        self.clock += 1
        return self.clock

    def _message(self, session: str) -> tuple[Message, dict[str, Any]]:
        self.seq += 1
        shared, hot = session in self.shared, session == self.shared[0]
        equal = session != self.deletable and self.rng.random() < (0.9 if hot else 0.7 if shared else 0.5)
        role = "user" if equal and shared else self.rng.choice(("user", "assistant"))
        if equal:
            content = "ok" if hot else self.rng.choices(EQUAL_CONTENTS, EQUAL_WEIGHTS)[0]
        else:
            content = f"c{self.index} n{self.seq}: {self.rng.getrandbits(32):08x}"
        message = Message(self.index, session, self.seq, role, content, equal, self.epochs[session])
        turn: dict[str, Any] = {"role": role, "content": content}
        if self.rng.random() < (0.25 if hot else 0.5):
            turn["timestamp"] = self._timestamp()
        return message, turn

    async def save(self, client: Client, new_protocol: bool) -> None:
        """One save_turn or save_turns call, with its retries, recorded in the outcome."""
        session = self._session()
        batch = self.rng.random() < 0.5
        sent = [self._message(session) for _ in range(self.rng.choice((2, 3)) if batch else 1)]
        messages = [message for message, _ in sent]
        if batch:
            tool, arguments = "save_turns", {"session_id": session, "turns": [turn for _, turn in sent]}
        else:
            tool, arguments = "save_turn", {"session_id": session, **sent[0][1]}
        if new_protocol and self.rng.random() < 0.3:
            arguments["id"] = f"{self.rng.getrandbits(128):032x}"
        call = Call(messages, acked=False, attempts=0)
        # Recorded before it is sent: a call cut short by a broken connection still counts.
        self.outcome.calls.append(call)
        self.stats.calls += 1
        for attempt in range(1, self.workload.max_attempts + 1):
            call.attempts = attempt
            self.stats.attempts += 1
            result = await client.call_tool(tool, arguments, read_timeout_seconds=CLIENT_TIMEOUT_SECONDS)
            if not result.is_error:
                call.acked = True
                structured = result.structured_content or {}
                self.stats.ids_returned += "id" in structured
                call.timestamps = result_timestamps(structured)
                return
            text = error_text(result)
            self.stats.error(error_kind(text), text)
            if not text.startswith(UNAVAILABLE):
                return
            arguments = retry_arguments(arguments, text, new_protocol=new_protocol)
            await anyio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return min(1.0, 0.05 * 2.0 ** (attempt - 1)) * self.rng.uniform(0.5, 1.0)


async def run_workload(base_urls: list[str], workload: Workload) -> Outcome:
    """Run `workload.clients` clients round-robin over `base_urls` for `workload.seconds`."""
    outcome = Outcome()
    stop_at = time.monotonic() + workload.seconds
    async with anyio.create_task_group() as group:
        for index in range(workload.clients):
            client = CampaignClient(index, base_urls[index % len(base_urls)], workload, outcome)
            group.start_soon(client.run, stop_at)
    return outcome
