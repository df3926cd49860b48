"""The fault campaign's page and summary show each store's counts, faults and errors."""

from __future__ import annotations

from bench.faults.page import Campaign, StoreRun, markdown, summary
from bench.faults.tally import Tally
from bench.faults.workload import ClientStats, Workload
from bench.machine import Machine


def campaign() -> Campaign:
    stats = ClientStats(calls=200, attempts=230)
    stats.error("Store unavailable", "Store unavailable: too slow (retry with timestamp 5)")
    tally = Tally(acknowledged=300, lost=2, doubled=7, unacked_calls=4)
    tally.note("lost", "lost in shared-0: ('user', 'ok')")
    run = StoreRun(
        "upstash", tally, stats, {"stall": 3, "html_500": 1}, seconds=10.0, sessions=9, protocol="id"
    )
    machine = Machine("a CPU", 2, "Linux", "3.11", "9.1.2", "2026-12-04 21:00 UTC")
    return Campaign(machine, Workload(seed=7), servers=3, deadline=1.0, quick=False, runs=[run])


def test_the_page_has_each_stores_counts_faults_and_findings() -> None:
    page = markdown(campaign())
    assert "| upstash | 300 | 2 | 7 | 0 | 4 | 20.0 |" in page
    assert "html_500 1, stall 3" in page
    assert "seed 7" in page
    assert "2 cores" in page
    assert "- lost in shared-0: ('user', 'ok')" in page
    assert "`Store unavailable: too slow (retry with timestamp 5)`" in page


def test_the_summary_is_one_aligned_row_per_store() -> None:
    lines = summary(campaign()).splitlines()
    assert lines[0].split() == [
        "store",
        "acknowledged",
        "lost",
        "doubled",
        "reordered",
        "unacknowledged",
        "calls",
        "calls/s",
    ]
    assert lines[1].split() == ["upstash", "300", "2", "7", "0", "4", "20.0"]
    assert len({len(line) for line in lines}) == 1
