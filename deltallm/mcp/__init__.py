"""MCP: the Streamable HTTP client, the server registry, the /mcp gateway side and the tool loop."""
