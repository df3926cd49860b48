"""Benchmarks: the memory layer and the MCP server against real servers started here."""
