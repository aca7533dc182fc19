"""Tools over MCP on the streams side: the project's own MCP servers, the pool's start-up in a worker, the
tool-call ledger and ToolCall events (the agent loop that uses them is agents/tools/)."""
