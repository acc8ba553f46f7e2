"""SAM's sparse write (Rae et al. 2016, arXiv 1610.09027, §3.2, eqs. 3–5).

    w^W_t = α_t ( γ_t w^R_{t−1} + (1 − γ_t) I^U_t )                         (eq. 5)
    M_t   = (1 − R_t) ⊙ M_{t−1} + w^W_t a_t^T,     R_t = I^U_t 1^T          (eqs. 3–4)

The write touches the K rows each head read at t−1 and that head's least recently used row
I^U_t, which is erased (zeroed) first. With H heads each head gets a distinct LRU row (the H
least recently used, in order). The write is applied in place through
:class:`agents.sam.undo_log.SparseWrite`.
"""

from __future__ import annotations

import torch

from agents.sam.undo_log import SparseWrite, UndoLog


def write_weights(
    previous_read_weights: torch.Tensor,
    previous_read_indices: torch.Tensor,
    least_used: torch.Tensor,
    write_gate: torch.Tensor,
    interpolation_gate: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """w^W_t over its K + 1 rows (eq. 5).

    Args:
        previous_read_weights: ``[B, H, K]`` w^R_{t−1}.
        previous_read_indices: ``[B, H, K]`` int64 s_{t−1}.
        least_used: ``[B, H]`` int64 I^U_t, one LRU row per head.
        write_gate: ``[B, H]`` α_t ∈ (0, 1).
        interpolation_gate: ``[B, H]`` γ_t ∈ (0, 1).
    Returns:
        (weights ``[B, H, K+1]``, indices ``[B, H, K+1]`` int64); the last column is I^U_t.
    """
    gamma = interpolation_gate[..., None]
    weights = write_gate[..., None] * torch.cat(
        [gamma * previous_read_weights, 1.0 - gamma], dim=-1
    )
    indices = torch.cat([previous_read_indices, least_used[..., None]], dim=-1)
    return weights, indices


def sparse_write(
    memory: torch.Tensor,
    log: UndoLog | None,
    token: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    add: torch.Tensor,
    erase: torch.Tensor,
) -> torch.Tensor:
    """Apply eq. 4 in place.

    Args:
        memory: ``[B, N, W]`` M_{t−1}, becomes M_t.
        log: the undo log when recording for backward, else ``None``.
        token: ``[B]`` chain token.
        weights: ``[B, H, M]`` w^W_t at ``indices``.
        indices: ``[B, H, M]`` int64.
        add: ``[B, H, W]`` a_t.
        erase: ``[B, E]`` int64 rows zeroed first (R_t).
    Returns:
        the next token ``[B]``.
    """
    return SparseWrite.apply(token, weights, add, memory, log, indices, erase, None)
