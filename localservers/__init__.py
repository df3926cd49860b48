"""The local servers the tests and the benchmarks both start, and what they use to drive them.

`redis_server` launches a throwaway Valkey (or redis-server), `gateway` puts an
Upstash-REST-compatible gateway in front of it, `resp` is the gateway's RESP client, `raw`
reads and writes what a backend stored, `processes` runs the real console script as a child,
and `backends` builds the settings that select one of these servers. Not part of the
installed package.
"""
