"""The MCP server that exposes the memory layer to agent hosts."""
