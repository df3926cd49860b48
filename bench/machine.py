"""The machine a benchmark or the fault campaign ran on, as their pages state it (no plotting
library: the campaign and its tests run without the bench extra)."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Machine:
    cpu: str
    cores: int
    system: str
    python: str
    valkey: str
    date: str

    @classmethod
    def here(cls, valkey: str) -> Machine:
        cpu = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return cls(
            cpu=cpu,
            cores=os.cpu_count() or 0,
            system=f"{platform.system()} {platform.release()}",
            python=sys.version.split()[0],
            valkey=valkey,
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
