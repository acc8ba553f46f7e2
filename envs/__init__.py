"""engram: envs."""
