"""engram: agents."""
