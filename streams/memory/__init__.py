"""The memory runtime: tiers built from settings, the sink processors that fill them, and recall for agents."""
