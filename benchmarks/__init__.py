"""engram: benchmarks."""
