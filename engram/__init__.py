"""engram: engram."""
