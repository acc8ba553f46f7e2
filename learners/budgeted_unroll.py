"""The learner's unroll through the checkpointed BPTT executor under a memory budget.

Gruslys et al. 2016 (``learners/bptt_plan.py``): the first unroll of each length measures
one step of the real network with saved-tensor hooks (hidden-state bytes and the bytes a
step keeps for its backward), plans the cheapest schedule that fits ``budget_bytes``,
and caches it. The executor's forward keeps only the plan's checkpoints; the loss over the
stacked per-step outputs then injects each step's gradient into the checkpointed
backward, so an unroll of thousands of steps never holds its whole graph.
"""

from __future__ import annotations

import torch

from learners import bptt


def step_slice(inputs: dict, t: int) -> dict:
    """``inputs`` ``[T, B, ...]`` (nested one level) -> step ``t``'s ``[B, ...]``."""
    return {k: ({n: v[t] for n, v in x.items()} if isinstance(x, dict) else x[t]) for k, x in inputs.items()}


class BudgetedUnroll:
    """``unroll(step_fn, state0, inputs) -> (outputs [T, ...], final_state)``.

    Args:
        mode: ``hsm``, ``ism`` or ``msm``.
        budget: bytes, or a string such as ``"2GiB"``.
        parameters: the network's parameters (excluded from the byte counts).
    """

    def __init__(self, mode: str, budget: int | str, parameters):
        if mode not in ("hsm", "ism", "msm"):
            raise ValueError(f"budgeted unroll mode must be hsm, ism or msm, got {mode!r}")
        self.mode = mode
        self.budget_bytes = bptt.parse_bytes(budget)
        self.parameters = list(parameters)
        self._plans: dict[int, bptt.Plan] = {}
        self.meter: bptt.SavedTensorMeter | None = None
        self.plan: bptt.Plan | None = None

    def _plan_for(self, step_fn, state0, inputs, length: int) -> bptt.Plan:
        if length not in self._plans:
            sizes = bptt.measure_step_bytes(step_fn, state0, step_slice(inputs, 0), self.parameters)
            self._plans[length] = bptt.make_plan(self.mode, length, self.budget_bytes, sizes)
        return self._plans[length]

    def __call__(self, step_fn, state0, inputs):
        length = next(iter(v for v in inputs.values() if isinstance(v, torch.Tensor))).shape[0]
        self.plan = self._plan_for(step_fn, state0, inputs, length)
        leaves = [v for x in inputs.values() for v in (x.values() if isinstance(x, dict) else [x])]
        self.meter = bptt.SavedTensorMeter(exclude=leaves + self.parameters)
        with self.meter:
            return bptt.checkpointed_unroll(step_fn, state0, inputs, self.plan, parameters=self.parameters, meter=self.meter)

    def backward_context(self) -> bptt.SavedTensorMeter:
        """Wrap the loss's backward in this so the measured peak covers recomputation."""
        return self.meter

    def metrics(self) -> dict[str, float]:
        if self.plan is None:
            return {}
        return {
            "bptt/recompute_ratio": self.plan.cost / self.plan.seq_len,
            "bptt/planned_bytes": float(self.plan.peak_bytes),
            "bptt/budget_bytes": float(self.budget_bytes),
            "bptt/measured_peak_bytes": float(self.meter.peak_bytes),
        }
