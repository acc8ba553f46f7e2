"""A sinusoidal code of the steps since an episode began, for addressing memory by time.

SAM's content reads find a row by what it holds; they cannot ask for "the row written 32
steps ago" when many rows hold alike contents (POPGym's Repeat Previous: four suits). If
the interface sees a code φ(t) of the step t, a write can stamp its row with a linear
image of φ(t) and a query can carry a linear image of φ(t), so the similarity of the query
at t to the row written at t' holds the term φ(t)ᵀ A φ(t'). With

    φ(t) = [sin ω_1 t, cos ω_1 t, …, sin ω_n t, cos ω_n t],   ω_j = P^(−(j−1)/n),

the code of t − k is a fixed rotation of the code of t (one 2×2 rotation by −kω_j per
frequency), so some A makes that term a function of t − t' alone, peaked at any lag k: one
linear map, learnable by the interface. The frequencies are those of the Transformer's
positional encoding (Vaswani et al. 2017, §3.5); using them for memory addressing is our
extension of SAM, off unless ``agent.memory.time_code`` is set.
"""

from __future__ import annotations

import torch

LONGEST_PERIOD = 1000.0  # P: the slowest sinusoid, in units of 2π steps


def frequencies(size: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """ω_1 … ω_n ``[size // 2]``, geometric from 1 to about 1 / P."""
    if size <= 0 or size % 2:
        raise ValueError(f"a step code's size must be a positive even number, got {size}")
    n = size // 2
    return LONGEST_PERIOD ** (-torch.arange(n, device=device, dtype=dtype) / n)


def step_code(time: torch.Tensor, size: int, *, dtype=torch.float32) -> torch.Tensor:
    """φ(t) ``[B, size]`` of the steps ``time`` ``[B]`` (int) since each episode began."""
    angles = time.to(dtype)[:, None] * frequencies(size, device=time.device, dtype=dtype)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
