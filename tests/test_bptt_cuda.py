"""The checkpointed unroll on a CUDA device: float64 gradients against plain BPTT, and
dropout replayed from the CUDA RNG state the executor saves at its checkpoints.

Skipped (and reported as skipped) on machines without CUDA, which includes CI. Imports
nothing beyond torch, learners.bptt and learners.bptt_plan, so it runs on a bare GPU image:
``python -m pytest tests/test_bptt_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learners.bptt.executor import checkpointed_unroll
from learners.bptt_plan import Op, plan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

T, B = 23, 4
DEVICE = "cuda"


def _lstm_problem(dropout: float):
    torch.manual_seed(0)
    cell = nn.LSTMCell(5, 7).double().to(DEVICE)
    head = nn.Linear(7, 3).double().to(DEVICE)

    def step(state, x):
        features = nn.functional.dropout(x["features"], dropout, training=dropout > 0)
        h, c = cell(features, (state["h"], state["c"]))
        return {"h": h, "c": c}, {"y": head(h)}

    state0 = {name: torch.randn(B, 7, dtype=torch.float64, device=DEVICE) for name in ("h", "c")}
    inputs = {"features": torch.randn(T, B, 5, dtype=torch.float64, device=DEVICE)}
    weights = torch.randn(T, B, 3, dtype=torch.float64, device=DEVICE)
    return step, state0, inputs, list(cell.parameters()) + list(head.parameters()), weights


def _grads(step, state0, inputs, params, weights, unroll_plan):
    state0 = {k: v.clone().requires_grad_() for k, v in state0.items()}
    torch.manual_seed(123)  # seeds the CUDA generator too
    outputs, final = checkpointed_unroll(step, state0, inputs, unroll_plan, parameters=params)
    after = torch.rand(1, device=DEVICE)  # the CUDA RNG continues as after a plain forward
    loss = (outputs["y"] * weights).sum() + final["h"].sum()
    return after, torch.autograd.grad(loss, params + [state0["h"], state0["c"]])


PLANS = [("hsm", 2, None), ("hsm", 5, None), ("ism", 4, 2), ("msm", 3, 2), ("msm", 6, 1.5), ("msm", 9, 3)]


@pytest.mark.parametrize("dropout", [0.0, 0.5], ids=["deterministic", "dropout"])
def test_cuda_gradients_equal_plain_bptt(dropout):
    step, state0, inputs, params, weights = _lstm_problem(dropout)
    plans = [plan(T, memory, mode, alpha=alpha) for mode, memory, alpha in PLANS]
    if dropout:  # recomputation restarts from stored internal states as well as hidden states
        assert any(p.actions[i].op is Op.PUSH_INTERNAL for p in plans for i in p.restored_pushes if i >= 0)
    want_after, want = _grads(step, state0, inputs, params, weights, None)
    for (mode, memory, _), unroll_plan in zip(PLANS, plans):
        after, got = _grads(step, state0, inputs, params, weights, unroll_plan)
        assert torch.equal(after, want_after), (mode, memory)
        for g, w in zip(got, want):
            assert g.device.type == "cuda"
            torch.testing.assert_close(g, w, rtol=0, atol=1e-10, msg=f"{mode} m={memory}")
