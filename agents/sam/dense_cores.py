"""Dense baselines of SAM (Rae et al. 2016, arXiv 1610.09027, §4 "DAM" and "NTM").

Both use the same LSTM controller and output layer as :class:`agents.sam.SAMCore`, and
update the memory *functionally* (a new M_t every step), so autograd stores O(N·W) per
step: this is the cost SAM removes.

- :class:`DAMCore` — Dense Access Memory: SAM's addressing with every weight dense over N.
  w^R_t = softmax_i(β D(q_t, M_t(i))) over all N rows; w^W_t = α(γ w^R_{t−1} + (1−γ) I^U_t)
  with U(2) usage; the LRU row is erased; M_t = (1 − R_t) ⊙ M_{t−1} + w^W_t a_t^T.
- :class:`NTMCore` — NTM-style dense content memory (Graves et al. 2014, eqs. 3–8) without
  the location shift: per head a write key k^W, strength, gate g interpolating with the
  previous write weights, erase e and add a; M_t = M_{t−1} ⊙ (1 − Σ_h w^W_h e_h^T)
  + Σ_h w^W_h a_h^T; reads are content-addressed over all N rows. (Omitting the shift and
  sharpening is our simplification: they add O(N) work that only makes NTM slower.)
"""

from __future__ import annotations

import torch
from torch import nn

from agents.core import CoreOutput, RecurrentCore, State
from agents.sam import usage as usage_lib
from agents.sam.index import cosine_similarity
from agents.sam.sam_core import oneplus


class _DenseMemoryCore(RecurrentCore):
    """Controller + dense memory. Subclasses set ``per_head`` and define
    ``_write(state, interface [B, H, per_head], time [B]) -> (M_t [B, N, W], carried
    weights [B, H, N] or None for "carry w^R_t", read query [B, H, W], read strength
    [B, H], usage [B, N])``.

    Args: as :class:`agents.sam.sam_core.SparseMemoryCore` (``top_k`` and ``index`` are
    accepted for a uniform constructor and ignored: every read is over all N rows).
    """

    def __init__(self, input_size: int, *, hidden_size: int, memory_slots: int,
                 word_size: int, num_heads: int, top_k: int | None = None,
                 index: str = "exact", output_size: int | None = None,
                 usage_threshold: float = usage_lib.DEFAULT_THRESHOLD):
        super().__init__()
        del top_k, index  # dense: all N rows
        self.hidden_size = hidden_size
        self.memory_slots = memory_slots
        self.word_size = word_size
        self.num_heads = num_heads
        self.usage_threshold = usage_threshold
        self.output_size = output_size or hidden_size
        read_size = num_heads * word_size
        self.controller = nn.LSTMCell(input_size + read_size, hidden_size)
        self.interface = nn.Linear(hidden_size, num_heads * self.per_head)
        self.output = nn.Linear(hidden_size + read_size, self.output_size)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        B, H, W, N = batch_size, self.num_heads, self.word_size, self.memory_slots
        floats = {"device": device, "dtype": self.interface.weight.dtype}
        return {
            "hidden": torch.zeros(B, self.hidden_size, **floats),
            "cell": torch.zeros(B, self.hidden_size, **floats),
            "read_words": torch.zeros(B, H, W, **floats),
            "weights": torch.zeros(B, H, N, **floats),  # w^R_{t−1} (DAM) / w^W_{t−1} (NTM)
            "memory": torch.zeros(B, N, W, **floats),
            "usage": torch.zeros(B, N, dtype=torch.int64, device=device),
            "time": torch.zeros(B, dtype=torch.int64, device=device),
        }

    def _content(self, query, strength, memory):
        """softmax_i(β D(q, M(i))): ``[B, H, W]``, ``[B, H]``, ``[B, N, W]`` -> ``[B, H, N]``."""
        return torch.softmax(strength[..., None] * cosine_similarity(query, memory), dim=-1)

    def forward(self, features, state, replay=None):
        B, H, W = features.shape[0], self.num_heads, self.word_size
        time = state["time"] + 1
        controller_input = torch.cat([features, state["read_words"].reshape(B, -1)], dim=1)
        hidden, cell = self.controller(controller_input, (state["hidden"], state["cell"]))
        interface = self.interface(hidden).view(B, H, self.per_head)
        memory, carried, read_query, read_strength, usage = self._write(state, interface, time)
        read_weights = self._content(read_query, read_strength, memory)  # [B, H, N]
        read = torch.bmm(read_weights, memory)  # r_t [B, H, W]
        if carried is None:  # DAM carries w^R_t and stamps its reads (U(2))
            carried = read_weights
            usage = torch.where((read_weights.detach() > self.usage_threshold).any(1),
                                time[:, None], usage)
        output = self.output(torch.cat([hidden, read.reshape(B, -1)], dim=1))
        new_state = dict(state, hidden=hidden, cell=cell, read_words=read, weights=carried,
                         memory=memory, usage=usage, time=time)
        return CoreOutput(features=output), new_state


class DAMCore(_DenseMemoryCore):
    """Dense Access Memory: SAM's read/write rules with dense weights."""

    def __init__(self, input_size: int, *, word_size: int, **kwargs):
        self.per_head = 2 * word_size + 3  # q, β, a, α, γ
        super().__init__(input_size, word_size=word_size, **kwargs)

    def _write(self, state, interface, time):
        W, H = self.word_size, self.num_heads
        query, strength = interface[..., :W], oneplus(interface[..., W])
        add = interface[..., W + 1: 2 * W + 1]
        alpha = torch.sigmoid(interface[..., 2 * W + 1])[..., None]
        gamma = torch.sigmoid(interface[..., 2 * W + 2])[..., None]
        least_used = usage_lib.least_recently_used(state["usage"], H)  # I^U_t [B, H]
        lru_one_hot = torch.zeros_like(state["weights"]).scatter_(2, least_used[..., None], 1.0)
        write = alpha * (gamma * state["weights"] + (1 - gamma) * lru_one_hot)  # w^W_t eq. 5
        erase = lru_one_hot.amax(1)  # R_t rows [B, N]
        memory = state["memory"] * (1 - erase[..., None]) + torch.bmm(write.transpose(1, 2), add)
        usage = torch.where((write.detach() > self.usage_threshold).any(1), time[:, None], state["usage"])
        return memory, None, query, strength, usage


class NTMCore(_DenseMemoryCore):
    """NTM-style dense content memory (content addressing, gated interpolation, erase/add)."""

    def __init__(self, input_size: int, *, word_size: int, **kwargs):
        # read key, read strength, write key, write strength, gate g, erase e, add a
        self.per_head = 4 * word_size + 3
        super().__init__(input_size, word_size=word_size, **kwargs)

    def _write(self, state, interface, time):
        W = self.word_size
        read_query, read_strength = interface[..., :W], oneplus(interface[..., W])
        key, strength = interface[..., W + 1: 2 * W + 1], oneplus(interface[..., 2 * W + 1])
        gate = torch.sigmoid(interface[..., 2 * W + 2])[..., None]
        erase = torch.sigmoid(interface[..., 2 * W + 3: 3 * W + 3])
        add = interface[..., 3 * W + 3: 4 * W + 3]
        content = self._content(key, strength, state["memory"])  # w^c_t over M_{t−1}
        write = gate * content + (1 - gate) * state["weights"]  # w^W_t, NTM eq. 7
        keep = torch.prod(1 - write[..., None] * erase[:, :, None, :], dim=1)  # Π_h (1 − w e^T)
        memory = state["memory"] * keep + torch.bmm(write.transpose(1, 2), add)
        return memory, write, read_query, read_strength, state["usage"]
