"""A fault campaign: many MCP clients saving through several servers while the store misbehaves.

`python -m bench.faults` starts the store and the servers, runs the clients with their retries
(`workload`), injects faults (`stacks`, with `localservers.chaos` and `localservers.fault_proxy`),
reads every session back and counts what was lost, doubled or reordered (`tally`), then prints
and writes the page (`page`).
"""
