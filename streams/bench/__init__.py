"""`agentstream bench`: the pipeline, memory tiers and agent swarms measured against raw aiokafka (tooling)."""
