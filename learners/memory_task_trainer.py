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
from learners.curriculum import Curriculum


def train_memory_task(
    *,
    task,
    core: RecurrentCore,
    steps: int,
    readout: nn.Module | None = None,
    batch_size: int = 8,
    lr: float = 1e-4,
    seed: int = 0,
    log_fn=None,
    log_every: int = 50,
    curriculum: Curriculum | None = None,
    time_limit_s: float | None = None,
    evaluate_levels: tuple[int, ...] = (),
    evaluate_every: int = 500,
    evaluate_sequences: int = 64,
) -> dict:
    """Train ``core`` (built with ``input_size == task.input_size``) on ``task``.

    Args:
        task: a task of :mod:`envs.memory_tasks` (``sample``, ``input_size``, ``target_size``).
        core: the recurrent core to train (its parameters and a readout are optimised).
        steps: number of updates.
        readout: the linear map from the core's features to per-bit logits; made here
            (``Linear(core.output_size, task.target_size)``) when not given.
        batch_size: B, sequences per update.
        lr: RMSProp learning rate.
        seed: seeds numpy (task data) and torch (readout init).
        log_fn: ``log_fn(step, metrics)`` called every ``log_every`` updates and at the end.
        curriculum: defaults to ``Curriculum()``.
        time_limit_s: stop after this many seconds of training, even before ``steps``.
        evaluate_levels: levels at which :func:`evaluate_levels` measures generalisation
            every ``evaluate_every`` updates and at the end, on ``evaluate_sequences``
            fresh sequences each (logged as ``eval/...``).
    Returns:
        the last metrics: ``loss`` (cross-entropy in bits per sequence), ``bits_error``
        (wrong bits per sequence), ``level`` (curriculum h), ``steps_per_second``,
        ``updates``, and the last evaluation's ``eval/...`` entries.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    curriculum = curriculum or Curriculum()
    readout = readout if readout is not None else nn.Linear(core.output_size, task.target_size)
    parameters = list(core.parameters()) + list(readout.parameters())
    optimiser = torch.optim.RMSprop(parameters, lr=lr, momentum=0.9)
    metrics: dict = {}
    started = time.perf_counter()
    evaluation_rng = np.random.default_rng(seed + 1)
    for step in range(1, steps + 1):
        out_of_time = time_limit_s is not None and time.perf_counter() - started >= time_limit_s
        batch = task.sample(rng, curriculum.sample_levels(rng, batch_size))
        inputs = torch.from_numpy(batch.inputs)  # [T, B, I]
        targets = torch.from_numpy(batch.targets)  # [T, B, O]
        mask = torch.from_numpy(batch.mask)  # [T, B]
        logits = run_sequences(core, readout, inputs)  # [T, B, O]
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
            "updates": step,
        }
        last = step == steps or out_of_time
        if evaluate_levels and (step % evaluate_every == 0 or last):
            metrics.update(evaluate_levels_of(task, core, readout, evaluate_levels, evaluate_sequences, evaluation_rng))
        if log_fn is not None and (step % log_every == 0 or last):
            log_fn(step, dict(metrics))
        if out_of_time:
            break
    return metrics


def run_sequences(core: RecurrentCore, readout: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Logits ``[T, B, O]`` of ``core`` + ``readout`` over time-major ``inputs`` ``[T, B, I]``."""
    state = core.initial_state(inputs.shape[1])
    logits = []
    for t in range(inputs.shape[0]):
        output, state = core(inputs[t], state)
        logits.append(readout(output.features))
    return torch.stack(logits)


@torch.no_grad()
def evaluate_levels_of(task, core: RecurrentCore, readout: nn.Module, levels, sequences: int,
                       rng: np.random.Generator, batch_size: int = 16) -> dict:
    """Generalisation at fixed levels: for each level, ``sequences`` fresh sequences of
    exactly that level; returns ``eval/bits_error_L{level}`` (wrong bits per sequence)
    and ``eval/solved_L{level}`` (fraction of sequences with no wrong bit)."""
    results = {}
    for level in levels:
        wrong_bits, solved = 0.0, 0
        for start in range(0, sequences, batch_size):
            count = min(batch_size, sequences - start)
            batch = task.sample(rng, [level] * count)
            logits = run_sequences(core, readout, torch.from_numpy(batch.inputs))
            wrong = ((logits > 0).float() != torch.from_numpy(batch.targets)).float().sum(-1)
            wrong = (wrong * torch.from_numpy(batch.mask)).sum(0)  # [B]
            wrong_bits += wrong.sum().item()
            solved += int((wrong == 0).sum().item())
        results[f"eval/bits_error_L{level}"] = wrong_bits / sequences
        results[f"eval/solved_L{level}"] = solved / sequences
    return results
