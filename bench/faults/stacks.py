"""The store under test, its fault injectors and the server processes in front of it.

Upstash: a Valkey, the `ChaosGateway` in front of it (stalls, late executions, error pages,
resets after executing). Redis: a durable Valkey (AOF, fsync always), the `FaultProxy` in front
of it (stalls, resets before or after forwarding), and a `ValkeyDisruptor` thread that pauses
it (SIGSTOP/SIGCONT) or kills and restarts it. Either way, `servers` console-script processes
over streamable HTTP, all on the same store, with a short STORE_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from localservers.chaos import Chaos, ChaosGateway
from localservers.durable_valkey import DurableValkey
from localservers.fault_proxy import FaultProxy
from localservers.processes import CONSOLE_SCRIPT, child_env, stop, wait_until_healthy
from localservers.redis_server import RedisServer, free_port

GATEWAY_TOKEN = "faults-token-3c81f0d2"  # a local fixture, not a secret
STORES = ("upstash", "redis")

# Per request (Upstash) or per chunk a client sends (Redis): the chance of each fault.
GATEWAY_FAULTS = {
    "stall": 0.02,
    "execute_late": 0.03,
    "html_500": 0.03,
    "json_503": 0.01,
    "drop_after_execute": 0.02,
}
PROXY_FAULTS = {"stall": 0.03, "reset_before": 0.03, "reset_after": 0.02}


@dataclass
class Stack:
    store: str
    base_urls: list[str]
    chaos: Chaos
    key_prefix: str
    valkey_port: int
    quiesce: Callable[[float], None]

    def sessions(self) -> dict[str, list[dict[str, Any]]]:
        return read_sessions(self.valkey_port, self.key_prefix)


def read_sessions(port: int, key_prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every session under `key_prefix`, read straight from Valkey: session id -> its turns."""
    client = redis.Redis(port=port)
    try:
        head = f"{key_prefix}session:"
        found: dict[str, list[dict[str, Any]]] = {}
        for key in client.scan_iter(match=f"{head}*", count=1000):
            value = client.get(key)
            assert isinstance(key, bytes)
            assert isinstance(value, bytes)
            found[key.decode()[len(head) :]] = json.loads(value)
        return found
    finally:
        client.close()


@dataclass
class ValkeyDisruptor:
    """Every few seconds, pauses Valkey a moment (SIGSTOP, SIGCONT) or kills and restarts it."""

    valkey: DurableValkey
    chaos: Chaos
    seed: int
    every: tuple[float, float] = (2.5, 6.0)
    kill_share: float = 0.4
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ValkeyDisruptor:
        self._thread = threading.Thread(target=self._run, name="valkey-disruptor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.valkey.resume()

    def _run(self) -> None:
        rng = random.Random(self.seed)
        while not self._stop.wait(rng.uniform(*self.every)):
            if not self.chaos.enabled:
                continue
            if rng.random() < self.kill_share:
                self.chaos.record("valkey_sigkill")
                self.valkey.kill_and_restart()
            else:
                seconds = rng.uniform(0.3, 2.5)
                self.chaos.record("valkey_sigstop", f"{seconds:.2f} s")
                self.valkey.pause()
                self._stop.wait(seconds)
                self.valkey.resume()


@contextmanager
def http_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """The console script over streamable HTTP, its log in `log_path`; yields its base URL."""
    port = free_port()
    command = [CONSOLE_SCRIPT, "--transport", "http", "--port", str(port)]
    # A file, not a pipe: nobody reads a pipe while the server runs, and a full one would block it.
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=child_env(**env), stdout=subprocess.DEVNULL, stderr=log)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, process, log_path.read_text)
            yield base_url
        finally:
            stop(process)


def server_env(store_url: dict[str, str], deadline: float, key_prefix: str) -> dict[str, str]:
    return store_url | {
        "STORE_TIMEOUT_SECONDS": str(deadline),
        "KEY_PREFIX": key_prefix,
        "MCP_REQUEST_TIMEOUT_SECONDS": "60",
    }


@contextmanager
def store_stack(store: str, *, servers: int, deadline: float, seed: int, logs: Path) -> Iterator[Stack]:
    """The store, its faults (off until `stack.chaos.enabled` is set) and `servers` processes.

    The servers' logs are written to `logs`/`store`-server-N.log.
    """
    key_prefix = f"faults-{seed}:"
    with ExitStack() as stack:
        if store == "upstash":
            valkey = RedisServer().start()
            stack.callback(valkey.stop)
            chaos = Chaos(GATEWAY_FAULTS, seed)
            gateway = ChaosGateway(valkey.port, GATEWAY_TOKEN, chaos=chaos, deadline=deadline)
            gateway.start()
            stack.callback(gateway.stop)
            store_url = {"UPSTASH_REDIS_REST_URL": gateway.url, "UPSTASH_REDIS_REST_TOKEN": GATEWAY_TOKEN}
            port = valkey.port

            def quiesce(quiet: float) -> None:
                chaos.enabled = False
                _wait_quiet(lambda: gateway.in_flight, quiet)

        elif store == "redis":
            durable = DurableValkey().start()
            stack.callback(durable.stop)
            chaos = Chaos(PROXY_FAULTS, seed)
            proxy = FaultProxy(durable.port, chaos, stall_seconds=(deadline + 0.2, deadline + 3.0)).start()
            stack.callback(proxy.stop)
            disruptor = ValkeyDisruptor(durable, chaos, seed + 1).start()
            stack.callback(disruptor.stop)
            store_url = {"REDIS_URL": proxy.url}
            port = durable.port

            def quiesce(quiet: float) -> None:
                chaos.enabled = False
                disruptor.stop()
                _wait_quiet(lambda: proxy.held, quiet)

        else:
            raise ValueError(f"unknown store {store!r}; expected one of {', '.join(STORES)}")
        env = server_env(store_url, deadline, key_prefix)
        urls = [
            stack.enter_context(http_server(env, logs / f"{store}-server-{n}.log")) for n in range(servers)
        ]
        yield Stack(store, urls, chaos, key_prefix, port, quiesce)


def _wait_quiet(busy: Callable[[], int], quiet: float, timeout: float = 120.0) -> None:
    """Block until `busy()` has been 0 for `quiet` seconds in a row (late executions done)."""
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if busy():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the store was still busy {timeout:g} s after the faults stopped")
