"""The local Redis Cluster the tests and benchmarks start."""

from __future__ import annotations

import socket

import pytest

import localservers.redis_cluster as redis_cluster
from localservers.redis_server import free_port


def test_a_node_whose_port_was_taken_meanwhile_starts_on_other_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        handed_out = iter([port])
        monkeypatch.setattr(redis_cluster, "free_port", lambda: next(handed_out, None) or free_port())
        cluster = redis_cluster.RedisCluster().start()
        try:
            assert port not in cluster.ports
            assert cluster.is_ok()
            assert len(cluster.primary_ports()) == 3
        finally:
            cluster.stop()
