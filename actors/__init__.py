"""engram: actors."""
