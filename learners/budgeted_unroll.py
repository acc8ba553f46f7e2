"""The learner's unroll through the checkpointed BPTT executor under a memory budget.

Gruslys et al. 2016 (``learners/bptt_plan.py``): the first unroll of each length measures
one step of the real network with saved-tensor hooks (hidden-state bytes and the bytes a
step keeps for its backward), plans the cheapest schedule that fits ``budget_bytes``,
and caches it. The executor's forward keeps only the plan's checkpoints; the loss over the
stacked per-step outputs then injects each step's gradient into the checkpointed
backward, so an unroll of thousands of steps never holds its whole graph.
"""

from __future__ import annotations

import contextlib

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
        measure_every: meter the bytes held for backward on the first unroll and on every
            ``measure_every``-th after it. The meter runs Python on every saved tensor
            (about 7% of an Atari unroll and backward at batch 8), so the unrolls in between run
            without it; ``metrics()`` reports the latest measurement.
    """

    def __init__(self, mode: str, budget: int | str, parameters, measure_every: int = 1):
        if mode not in ("hsm", "ism", "msm"):
            raise ValueError(f"budgeted unroll mode must be hsm, ism or msm, got {mode!r}")
        if measure_every < 1:
            raise ValueError(f"measure_every must be >= 1, got {measure_every}")
        self.mode = mode
        self.budget_bytes = bptt.parse_bytes(budget)
        self.parameters = list(parameters)
        self.measure_every = measure_every
        self._plans: dict[int, bptt.Plan] = {}
        self.meter: bptt.SavedTensorMeter | None = None  # set during a metered unroll only
        self.measured_peak_bytes: int | None = None
        self.unrolls = 0
        self.plan: bptt.Plan | None = None

    def _plan_for(self, step_fn, state0, inputs, length: int) -> bptt.Plan:
        if length not in self._plans:
            sizes = bptt.measure_step_bytes(step_fn, state0, step_slice(inputs, 0), self.parameters)
            self._plans[length] = bptt.make_plan(self.mode, length, self.budget_bytes, sizes)
        return self._plans[length]

    def __call__(self, step_fn, state0, inputs):
        length = next(iter(v for v in inputs.values() if isinstance(v, torch.Tensor))).shape[0]
        self.plan = self._plan_for(step_fn, state0, inputs, length)
        self.meter = None
        if self.unrolls % self.measure_every == 0:
            leaves = [v for x in inputs.values() for v in (x.values() if isinstance(x, dict) else [x])]
            self.meter = bptt.SavedTensorMeter(exclude=leaves + self.parameters)
        self.unrolls += 1
        with self.meter or contextlib.nullcontext():
            return bptt.checkpointed_unroll(step_fn, state0, inputs, self.plan, parameters=self.parameters, meter=self.meter)

    @contextlib.contextmanager
    def backward_context(self):
        """Wrap the loss's backward in this so a metered unroll's peak covers recomputation."""
        with self.meter or contextlib.nullcontext():
            yield
        if self.meter is not None:
            self.measured_peak_bytes = self.meter.peak_bytes

    def metrics(self) -> dict[str, float]:
        if self.plan is None:
            return {}
        metrics = {
            "bptt/recompute_ratio": self.plan.cost / self.plan.seq_len,
            "bptt/planned_bytes": float(self.plan.peak_bytes),
            "bptt/budget_bytes": float(self.budget_bytes),
        }
        if self.measured_peak_bytes is not None:
            metrics["bptt/measured_peak_bytes"] = float(self.measured_peak_bytes)
        return metrics
