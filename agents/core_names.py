"""The names of the recurrent cores, in one place and without torch, so that the config
can validate ``agent.core`` without building anything (agents/registry.py builds them)."""

STRAW_VARIANTS = ("straw", "strawe", "straw_re")
"""STRAW, STRAWe (a Gaussian latent before the planner) and STRAW-re (re-plans every step)."""
MEMORY_CORES = ("sam", "sdnc", "dam", "ntm")
"""Sparse Access Memory, its DNC variant, and the dense baselines."""
CORES = ("lstm", *STRAW_VARIANTS, *MEMORY_CORES)
