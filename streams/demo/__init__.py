"""The demos a new user runs first: `agentstream demo` and `agentstream replay demo` (tooling, not runtime)."""
