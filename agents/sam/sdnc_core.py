"""SDNCCore: the Sparse Differentiable Neural Computer (Rae et al. 2016, arXiv 1610.09027,
§3.6 and Supplementary F).

A DNC (Graves et al. 2016) whose memory access is SAM's: sparse top-K content reads, the
sparse write w^W_t = α(γ w^R_{t−1} + (1 − γ) I^U_t) into the rows read before and the LRU
row (SAM's U(2) usage replaces the DNC's allocation sort), and the N×N temporal link
matrix replaced by sparse N×K_L tables (:mod:`agents.sam.links`, K_L = 8, no gradient
through the links). Each head reads with the DNC's three modes (eq. of the DNC read
weights): w^R_t = π_b b_t + π_c c_t + π_f f_t, π_t = softmax of 3 logits, with
f_t = L_t w^R_{t−1} (forward in write order), b_t = L_t^T w^R_{t−1} (backward) and c_t the
sparse content weights over the top-K rows. The read uses the K + 2·K·K_L rows these
modes name; the K largest of the combined weights are carried as w^R_t (they are what the
next write and the next link read start from).
"""

from __future__ import annotations

import torch

from agents.sam import links as links_lib
from agents.sam.sam_core import SparseMemoryCore, rows_in_use
from agents.sam.sparse_read import content_weights
from agents.sam.undo_log import SparseGather, open_log


class SDNCCore(SparseMemoryCore):
    """SAM reads/writes + SAM usage + sparse temporal links; 3-way read modes.

    Args: as :class:`agents.sam.sam_core.SparseMemoryCore`, plus
        link_size: K_L, entries kept per link row (paper: 8).
    """

    extra_interface = 3  # read-mode logits (backward, content, forward) per head
    link_tables = ("link_prev_index", "link_prev_value", "link_next_index", "link_next_value")
    row_tables = ("memory", "usage", *link_tables)

    def __init__(self, input_size: int, *, link_size: int = 8, **kwargs):
        self.link_size = link_size
        super().__init__(input_size, **kwargs)

    def _fresh_state(self, batch_size, device):
        state = super()._fresh_state(batch_size, device)
        state.update(links_lib.initial_links(
            batch_size, self.memory_slots, self.link_size, device=device,
            dtype=self.interface.weight.dtype,
        ))
        return state

    def _read(self, state, memory, log, token, interface):
        B, H, K = memory.shape[0], self.num_heads, self.top_k
        content_rows = self._search(memory, log, interface["query"], K)  # [B, H, K]
        forward_rows, forward = links_lib.directional_weights(
            state["link_next_index"], state["link_next_value"],
            state["read_indices"], state["read_weights"],
        )  # f_t = L w^R_{t−1}
        backward_rows, backward = links_lib.directional_weights(
            state["link_prev_index"], state["link_prev_value"],
            state["read_indices"], state["read_weights"],
        )  # b_t = L^T w^R_{t−1}
        indices = torch.cat([content_rows, backward_rows, forward_rows], dim=-1)
        rows, token = SparseGather.apply(token, memory, log, indices)  # [B, H, R, W]
        content = content_weights(interface["query"], interface["strength"], rows[:, :, :K])  # c_t
        modes = torch.softmax(interface["extra"], dim=-1)  # π_t = (π_b, π_c, π_f), [B, H, 3]
        weights = torch.cat([
            modes[..., 1:2] * content, modes[..., 0:1] * backward, modes[..., 2:3] * forward,
        ], dim=-1)  # w^R_t over the R gathered rows
        read = (weights[..., None] * rows).sum(2)  # r_t
        carried = weights.topk(K, dim=-1)
        return read, carried.values, indices.gather(-1, carried.indices), token, {"read_modes": modes}

    def _after_write(self, state, log, weights, indices):
        """L_t and p_t from the write of step t, before the read uses them."""
        B = weights.shape[0]
        links = {name: state[name] for name in (
            "link_prev_index", "link_prev_value", "link_next_index", "link_next_value",
            "precedence_index", "precedence_value")}
        if log is not None and log.journal:  # the rows update_links rewrites: written, precedence
            written = log.flat(indices.reshape(B, -1)).reshape(-1)
            precedence = state["precedence_index"]
            preceding = log.flat(precedence.clamp(min=0))[precedence >= 0]
            for name in ("link_prev_index", "link_prev_value"):
                log.record_rows(state[name], written)
            for name in ("link_next_index", "link_next_value"):
                log.record_rows(state[name], preceding)
        links_lib.update_links(links, indices.reshape(B, -1), weights.reshape(B, -1))
        return {"precedence_index": links["precedence_index"],
                "precedence_value": links["precedence_value"]}

    def reset_where(self, state, first):
        if not bool(first.any()):
            return state
        state = super().reset_where(state, first)
        log = open_log(state["memory"])
        with torch.no_grad():
            if log is not None and log.journal:
                sequences = torch.nonzero(first).view(-1)
                for name in self.link_tables:
                    linked = (state[name.replace("value", "index")] >= 0).any(-1)
                    log.record_rows(state[name], rows_in_use(linked, sequences))
            for name in ("link_prev_index", "link_next_index"):
                state[name][first] = -1
            for name in ("link_prev_value", "link_next_value"):
                state[name][first] = 0.0
        return state

    def _used_rows(self, state):
        return super()._used_rows(state) | (state["link_prev_index"] >= 0).any(-1) | (
            state["link_next_index"] >= 0).any(-1)
