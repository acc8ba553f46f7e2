"""Tests of SDNC's sparse temporal links and core (Rae et al. 2016, §3.6)."""

from __future__ import annotations

import torch

from agents.sam import links as links_lib
from agents.sam.sdnc_core import SDNCCore


def test_links_follow_write_order_and_keep_at_most_k_l_distinct_entries():
    B, N, K_L = 2, 50, 8
    state = links_lib.initial_links(B, N, K_L)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(N, generator=generator)[:30]
    for step, row in enumerate(order.tolist()):
        extra = torch.randint(0, N, (B, 3), generator=generator)  # small side writes
        rows = torch.cat([torch.full((B, 1), row), extra], 1)
        weights = torch.cat([torch.full((B, 1), 0.9), torch.full((B, 3), 0.01)], 1)
        links_lib.update_links(state, rows, weights)
        for name in ("link_prev_index", "link_next_index"):
            index = state[name]
            assert index.shape[-1] == K_L
            for b in range(B):
                for i in range(N):
                    entries = [j for j in index[b, i].tolist() if j >= 0]
                    assert len(entries) == len(set(entries))  # distinct, ≤ K_L
        if step:
            previous = order[step - 1].item()
            # the strongest backward link of the row just written points at the previous one
            best = state["link_prev_value"][:, row].argmax(-1)
            assert (state["link_prev_index"][torch.arange(B), row, best] == previous).all()
            best = state["link_next_value"][:, previous].argmax(-1)
            assert (state["link_next_index"][torch.arange(B), previous, best] == row).all()
    assert (state["link_prev_value"] >= 0).all() and (state["precedence_index"] >= 0).sum() <= B * K_L


def test_sdnc_backward_reverts_memory_and_state_round_trips():
    torch.manual_seed(1)
    core = SDNCCore(4, hidden_size=8, memory_slots=40, word_size=6, num_heads=2, top_k=3, index="exact")
    state = core.initial_state(2)
    x = torch.randn(12, 2, 4, requires_grad=True)
    total = 0
    for t in range(12):
        out, state = core(x[t], state)
        total = total + out.features.pow(2).sum()
    packed = core.pack_state(state)
    assert all(not name.startswith("link_") for name in packed)  # link tables go by rows
    unpacked = core.unpack_state(packed)
    for name in state:
        if name != "token":
            torch.testing.assert_close(unpacked[name], state[name], rtol=0, atol=0)
    total.backward()
    assert x.grad[0].abs().sum() > 0
    assert (state["memory"] == 0).all()  # the undo log took the memory back to its start
