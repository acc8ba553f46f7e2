"""Supervised training of a recurrent core on the algorithmic memory tasks (Rae et al.
2016, arXiv 1610.09027, §4.2): one process, no Ray.

The core reads the task input one step at a time; a linear readout of its features gives
per-bit logits; the loss is the sigmoid cross-entropy summed over the scored bits of a
sequence (reported in bits, the paper's "cost per sequence"). Optimiser: RMSProp (the paper
used lr 1e-5 with batch 8; larger rates are fine for short runs). Full BPTT over each
sequence; SAM's undo log makes its memory cost O(T·K·W).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.core import RecurrentCore
from envs.memory_tasks import Curriculum


def train_memory_task(
    *,
    task,
    core: RecurrentCore,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-4,
    seed: int = 0,
    log_fn=None,
    log_every: int = 50,
    curriculum: Curriculum | None = None,
) -> dict:
    """Train ``core`` (built with ``input_size == task.input_size``) on ``task``.

    Args:
        task: a task of :mod:`envs.memory_tasks` (``sample``, ``input_size``, ``target_size``).
        core: the recurrent core to train (its parameters and a readout are optimised).
        steps: number of updates.
        batch_size: B, sequences per update.
        lr: RMSProp learning rate.
        seed: seeds numpy (task data) and torch (readout init).
        log_fn: ``log_fn(step, metrics)`` called every ``log_every`` updates and at the end.
        curriculum: defaults to ``Curriculum()``.
    Returns:
        the last metrics: ``loss`` (cross-entropy in bits per sequence), ``bits_error``
        (wrong bits per sequence), ``level`` (curriculum h), ``steps_per_second``.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    curriculum = curriculum or Curriculum()
    readout = nn.Linear(core.output_size, task.target_size)
    parameters = list(core.parameters()) + list(readout.parameters())
    optimiser = torch.optim.RMSprop(parameters, lr=lr, momentum=0.9)
    metrics: dict = {}
    started = time.perf_counter()
    for step in range(1, steps + 1):
        batch = task.sample(rng, curriculum.sample_levels(rng, batch_size))
        inputs = torch.from_numpy(batch.inputs)  # [T, B, I]
        targets = torch.from_numpy(batch.targets)  # [T, B, O]
        mask = torch.from_numpy(batch.mask)  # [T, B]
        state = core.initial_state(batch_size)
        logits = []
        for t in range(inputs.shape[0]):
            output, state = core(inputs[t], state)
            logits.append(readout(output.features))
        logits = torch.stack(logits)  # [T, B, O]
        per_bit = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        loss_nats = (per_bit.sum(-1) * mask).sum() / batch_size
        optimiser.zero_grad()
        loss_nats.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        optimiser.step()
        with torch.no_grad():
            wrong = ((logits > 0).float() != targets).float().sum(-1) * mask
            bits_error = wrong.sum().item() / batch_size
            scored_bits = mask.sum().item() * task.target_size / batch_size
        loss_bits = loss_nats.item() / math.log(2)
        curriculum.update(loss_bits / max(scored_bits, 1.0))
        metrics = {
            "loss": loss_bits,
            "bits_error": bits_error,
            "level": curriculum.level,
            "steps_per_second": step / (time.perf_counter() - started),
        }
        if log_fn is not None and (step % log_every == 0 or step == steps):
            log_fn(step, dict(metrics))
    return metrics
