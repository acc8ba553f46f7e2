"""SAM's sparse content read (Rae et al. 2016, arXiv 1610.09027, §3.1, eqs. 1–2).

    w^R_t(i) = softmax_{i ∈ s_t}( β_t · D(q_t, M_t(i)) ),   s_t = top-K rows of D(q_t, M_t)
    r_t      = Σ_{k=1..K} w^R_t(s_k) M_t(s_k)

with D the cosine similarity. Only the K rows s_t are gathered, so ∂L/∂M_t is non-zero
only on them. The key strength β_t ≥ 1 (``oneplus`` as in the DNC) is our addition; with
β ≡ 1 the read is exactly the paper's softmax over cosine similarities.
"""

from __future__ import annotations

import torch

from agents.sam.index import cosine_similarity
from agents.sam.undo_log import SparseGather, UndoLog


def content_weights(query: torch.Tensor, strength: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """softmax_k(β · D(q, rows_k)).

    Args:
        query: ``[B, H, W]`` q_t.
        strength: ``[B, H]`` β_t.
        rows: ``[B, H, K, W]`` the candidate rows.
    Returns:
        ``[B, H, K]`` weights that sum to one over K.
    """
    return torch.softmax(strength[..., None] * cosine_similarity(query, rows), dim=-1)


def sparse_read(
    memory: torch.Tensor,
    log: UndoLog | None,
    token: torch.Tensor,
    query: torch.Tensor,
    strength: torch.Tensor,
    indices: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read the rows ``indices`` of M_t with content weights.

    Args:
        memory: ``[B, N, W]`` M_t (after this step's write).
        log: the undo log when recording for backward, else ``None``.
        token: ``[B]`` chain token.
        query: ``[B, H, W]`` q_t.
        strength: ``[B, H]`` β_t.
        indices: ``[B, H, K]`` int64 s_t from the index.
    Returns:
        (r_t ``[B, H, W]``, w^R_t ``[B, H, K]``, next token ``[B]``).
    """
    rows, token = SparseGather.apply(token, memory, log, indices)  # M_t(s_t), [B, H, K, W]
    weights = content_weights(query, strength, rows)  # w^R_t, eq. 1
    read = (weights[..., None] * rows).sum(2)  # r_t, eq. 2
    return read, weights, token
