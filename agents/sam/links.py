"""SDNC's sparse temporal links (Rae et al. 2016, arXiv 1610.09027, §3.6 and Supp. F).

The DNC's N×N temporal link matrix (Graves et al. 2016, eqs. for L_t and p_t)

    L_t[i, j] = (1 − w^W_t[i] − w^W_t[j]) L_{t−1}[i, j] + w^W_t[i] p_{t−1}[j]
    p_t       = (1 − Σ_i w^W_t[i]) p_{t−1} + w^W_t

is kept sparse: every row holds at most K_L entries (K_L = 8), the largest ones. Two
tables hold the same links in both directions so both read modes are O(K·K_L):

- ``prev`` (rows of L): for row i, ``(j, L[i, j])`` — the rows written just before i;
- ``next`` (rows of L^T): for row j, ``(i, L[i, j])`` — the rows written just after j.

Each is an index tensor ``[B, N, K_L]`` (−1 = empty) and a value tensor ``[B, N, K_L]``;
the precedence p_t is ``[B, K_L]`` indices and values. No gradient flows through links.

Approximation (ours, documented): the decay (1 − w[i] − w[j]) is applied to the rows
being updated (written rows in ``prev``, precedence rows in ``next``); entries of other
rows that point at a written row keep their value until they are displaced, which keeps
the update O(P·K_L) instead of O(N·K_L).
"""

from __future__ import annotations

import torch


def _merge_top(indices: torch.Tensor, values: torch.Tensor, keep: int):
    """Sum duplicate indices along the last axis and keep the ``keep`` largest.

    Args:
        indices: ``[..., C]`` int64, −1 = empty.
        values: ``[..., C]``.
    Returns:
        (``[..., keep]`` indices, ``[..., keep]`` values), empty slots −1 / 0.
    """
    same = (indices[..., :, None] == indices[..., None, :]) & (indices[..., None, :] >= 0)
    summed = (same.to(values.dtype) * values[..., None, :]).sum(-1)
    count = indices.shape[-1]
    earlier = torch.ones(count, count, dtype=torch.bool, device=indices.device).tril(-1)
    first = ~(same & earlier).any(-1)  # the first occurrence of each index carries the sum
    score = torch.where(first & (indices >= 0), summed, torch.full_like(summed, -1.0))
    top = score.topk(keep, dim=-1)
    chosen = indices.gather(-1, top.indices)
    valid = top.values > 0
    return torch.where(valid, chosen, -1), torch.where(valid, top.values, 0.0)


def initial_links(batch_size: int, num_rows: int, link_size: int, device=None, dtype=None):
    """Empty link tables and precedence (all ``−1`` / 0)."""
    def table(*shape):
        return torch.full(shape, -1, dtype=torch.int64, device=device), torch.zeros(shape, device=device, dtype=dtype)

    prev_index, prev_value = table(batch_size, num_rows, link_size)
    next_index, next_value = table(batch_size, num_rows, link_size)
    precedence_index, precedence_value = table(batch_size, link_size)
    return {
        "link_prev_index": prev_index, "link_prev_value": prev_value,
        "link_next_index": next_index, "link_next_value": next_value,
        "precedence_index": precedence_index, "precedence_value": precedence_value,
    }


@torch.no_grad()
def update_links(state: dict, rows: torch.Tensor, weights: torch.Tensor) -> None:
    """Apply one write to the link tables (in place) and the precedence (replaced).

    Args:
        state: holds the tensors of :func:`initial_links` (``[B, N, K_L]`` / ``[B, K_L]``).
        rows: ``[B, P]`` int64 rows written this step (duplicates allowed).
        weights: ``[B, P]`` w^W_t at those rows.
    """
    B, P = rows.shape
    link_size = state["precedence_index"].shape[1]
    weights = weights.detach()
    batch = torch.arange(B, device=rows.device)
    # w^W_t[i] summed over duplicate rows, so duplicates compute identical updates
    same_row = rows[:, :, None] == rows[:, None, :]
    row_weight = (same_row.to(weights.dtype) * weights[:, None, :]).sum(-1)  # [B, P]
    p_index, p_value = state["precedence_index"], state["precedence_value"]  # p_{t−1}

    def written_weight(index):  # w^W_t[j] for entries ``index`` [B, ..., C]
        flat = index.reshape(B, -1)
        match = (flat[:, :, None] == rows[:, None, :]).to(weights.dtype)
        return (match * weights[:, None, :]).sum(-1).view_as(index)

    # prev rows of the written rows i: decayed old entries ∪ w[i] p_{t−1}[j]
    old_index = state["link_prev_index"][batch[:, None], rows]  # [B, P, K_L]
    old_value = state["link_prev_value"][batch[:, None], rows]
    decay = (1 - row_weight[..., None] - written_weight(old_index)).clamp(min=0)
    new_value = row_weight[..., None] * p_value[:, None, :]  # [B, P, K_L]
    keep_index = torch.where(p_index[:, None, :] == rows[..., None], -1, p_index[:, None, :].expand(B, P, link_size))
    index, value = _merge_top(
        torch.cat([old_index, keep_index], -1), torch.cat([old_value * decay, new_value], -1), link_size
    )
    state["link_prev_index"][batch[:, None], rows] = index
    state["link_prev_value"][batch[:, None], rows] = value

    # next rows of the precedence rows j (distinct): decayed old entries ∪ w[i] p[j]
    valid_p = p_index >= 0
    safe_p = p_index.clamp(min=0)
    old_index = state["link_next_index"][batch[:, None], safe_p]  # [B, K_L, K_L]
    old_value = state["link_next_value"][batch[:, None], safe_p]
    decay = (1 - written_weight(p_index)[..., None] - written_weight(old_index)).clamp(min=0)
    new_value = p_value[..., None] * row_weight[:, None, :]  # [B, K_L, P]
    new_index = torch.where(rows[:, None, :] == p_index[..., None], -1, rows[:, None, :].expand(B, link_size, P))
    index, value = _merge_top(
        torch.cat([old_index, new_index], -1), torch.cat([old_value * decay, new_value], -1), link_size
    )
    target_b, target_j = batch[:, None].expand_as(p_index)[valid_p], p_index[valid_p]
    state["link_next_index"][target_b, target_j] = index[valid_p]
    state["link_next_value"][target_b, target_j] = value[valid_p]

    # p_t = (1 − Σ w) p_{t−1} + w, kept to its K_L largest entries
    total = weights.sum(-1, keepdim=True).clamp(max=1)
    index, value = _merge_top(
        torch.cat([p_index, rows], -1), torch.cat([(1 - total) * p_value, weights], -1), link_size
    )
    state["precedence_index"] = index
    state["precedence_value"] = value


def directional_weights(index_table, value_table, read_indices, read_weights):
    """f_t = L w^R_{t−1} (with ``next``) or b_t = L^T w^R_{t−1} (with ``prev``), sparsely.

    Args:
        index_table, value_table: ``[B, N, K_L]`` a link table.
        read_indices: ``[B, H, K]`` int64 s_{t−1}.
        read_weights: ``[B, H, K]`` w^R_{t−1} (differentiable).
    Returns:
        (rows ``[B, H, K·K_L]`` int64 with −1 replaced by 0, weights ``[B, H, K·K_L]``).
    """
    B, H, K = read_indices.shape
    batch = torch.arange(B, device=read_indices.device)[:, None, None]
    index = index_table[batch, read_indices]  # [B, H, K, K_L]
    value = value_table[batch, read_indices].to(read_weights.dtype)
    weights = (read_weights[..., None] * value).reshape(B, H, -1)
    return index.clamp(min=0).reshape(B, H, -1), weights
