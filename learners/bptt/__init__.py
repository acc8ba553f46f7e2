"""Memory-efficient backpropagation through time (Gruslys et al. 2016, arXiv:1606.03401).

The planner that chooses what to store is :mod:`learners.bptt_plan` (pure Python, no torch).
This package runs its plans on a PyTorch step function, one concern per module:

- :mod:`learners.bptt.budget` — the modes and memory sizes a config names (no torch).
- :mod:`learners.bptt.step_values` — the nested dicts a step takes and gives, flattened.
- :mod:`learners.bptt.meter` — the bytes held for backward, and one step's sizes.
- :mod:`learners.bptt.executor` — :func:`~learners.bptt.executor.checkpointed_unroll`,
  which runs a plan (or plain BPTT) with exact gradients.
- :mod:`learners.bptt.unroll` — the learner's unrolls: plain, and planned under a memory
  budget from a measured step.

Import from the module that owns a name; nothing is re-exported here.
"""
