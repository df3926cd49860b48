"""An import stopped by a write the replicas did not acknowledge says that sessions it did not
count may be stored, and that importing again is the way on."""

from __future__ import annotations

import json
import time

from localservers.processes import child_env
from localservers.raw import RedisRaw
from localservers.redis_server import RedisServer
from tests.test_export_import import run

DAY_MS = 86_400_000


def test_an_import_stopped_by_missing_replica_acks_says_uncounted_sessions_may_be_stored(
    redis_server: RedisServer, key_prefix: str
) -> None:
    expires_at = int(time.time() * 1000) + DAY_MS
    lines = [
        json.dumps(
            {
                "session_id": f"s{n}",
                "expires_at": expires_at,
                "turns": [{"role": "user", "content": "hi", "timestamp": 1}],
            }
        )
        for n in range(3)
    ]
    env_settings = {
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": key_prefix,
        # A server without replicas: every write is stored, and none is acknowledged.
        "REDIS_REPLICA_ACKS": "1",
        "STORE_TIMEOUT_SECONDS": "3",
    }

    done = run("import", env=child_env(**env_settings), stdin="\n".join(lines).encode())

    assert done.returncode == 1
    messages = done.stderr.decode().strip().splitlines()
    assert "only 0 of the 1 replicas" in messages[-2]
    assert messages[-2].endswith(
        "the import stopped there: the sessions counted below are imported, and those under way "
        "when it stopped may be too; once the cause is fixed, import the same file again (what is "
        "stored already counts as unchanged)"
    )
    written = int(messages[-1].removeprefix("session-memory-mcp import: ").split()[0])
    with RedisRaw(redis_server.port) as raw:
        stored = sum(raw.get(f"{key_prefix}session:s{n}") is not None for n in range(3))
    # What the message warns of: more is stored than the count says.
    assert stored > written
