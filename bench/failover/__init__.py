"""A primary of a Redis Cluster killed while MCP clients save: what acknowledged turns survive."""
