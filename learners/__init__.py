"""engram: learners."""
