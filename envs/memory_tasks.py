"""Algorithmic memory tasks of Rae et al. 2016 (arXiv 1610.09027, §4.2 and Supp. E), as
batched numpy generators: copy, associative recall and priority sort. Each episode's level
is given by the caller; the paper's curriculum over levels lives beside its trainer
(:mod:`learners.curriculum`).

Every ``sample`` returns time-major arrays: ``inputs`` ``[T, B, input_size]`` float32,
``targets`` ``[T, B, target_size]`` float32 in {0, 1} and ``mask`` ``[T, B]`` float32 (1
where the target is scored). Sequences in a batch are padded to the longest; padding has
zero input and zero mask. numpy only (envs/ never imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    inputs: np.ndarray  # [T, B, input_size]
    targets: np.ndarray  # [T, B, target_size]
    mask: np.ndarray  # [T, B]
    levels: np.ndarray  # [B] int, the level of each sequence


def _pack(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], levels) -> Batch:
    """Pad per-sequence (inputs [T_b, I], targets [T_b, O], mask [T_b]) to a batch."""
    length = max(p[0].shape[0] for p in parts)
    B = len(parts)
    inputs = np.zeros((length, B, parts[0][0].shape[1]), np.float32)
    targets = np.zeros((length, B, parts[0][1].shape[1]), np.float32)
    mask = np.zeros((length, B), np.float32)
    for b, (x, y, m) in enumerate(parts):
        inputs[: len(x), b], targets[: len(y), b], mask[: len(m), b] = x, y, m
    return Batch(inputs, targets, mask, np.asarray(levels))


class CopyTask:
    """Copy: L random ``bits``-wide binary vectors, a delimiter, then reproduce them.

    Input channels: ``bits`` data + 1 delimiter. Target: the L vectors, after the
    delimiter. Level = L (paper: 1–20). T = 2L + 1.
    """

    def __init__(self, bits: int = 6):
        self.bits = bits
        self.input_size = bits + 1
        self.target_size = bits

    def sample_one(self, rng: np.random.Generator, level: int):
        L = level
        data = rng.integers(0, 2, size=(L, self.bits)).astype(np.float32)
        x = np.zeros((2 * L + 1, self.input_size), np.float32)
        x[:L, : self.bits] = data
        x[L, self.bits] = 1.0  # delimiter
        y = np.zeros((2 * L + 1, self.target_size), np.float32)
        y[L + 1:] = data
        m = np.zeros(2 * L + 1, np.float32)
        m[L + 1:] = 1.0
        return x, y, m

    def sample(self, rng: np.random.Generator, levels) -> Batch:
        return _pack([self.sample_one(rng, int(level)) for level in levels], levels)


class AssociativeRecallTask:
    """Associative recall: ``level`` items of ``item_length`` vectors, each item preceded
    by an item delimiter; then a query delimiter, one of the items (not the last), a query
    delimiter, and the target is the item that followed it. Paper: 3–6 items of 3 vectors.

    Input channels: ``bits`` + item delimiter + query delimiter.
    """

    def __init__(self, bits: int = 6, item_length: int = 3):
        self.bits = bits
        self.item_length = item_length
        self.input_size = bits + 2
        self.target_size = bits

    def sample_one(self, rng: np.random.Generator, level: int):
        items = max(level, 2)
        n = self.item_length
        data = rng.integers(0, 2, size=(items, n, self.bits)).astype(np.float32)
        query = int(rng.integers(0, items - 1))
        story = items * (n + 1)
        total = story + 1 + n + 1 + n
        x = np.zeros((total, self.input_size), np.float32)
        for i in range(items):
            x[i * (n + 1), self.bits] = 1.0  # item delimiter
            x[i * (n + 1) + 1: (i + 1) * (n + 1), : self.bits] = data[i]
        x[story, self.bits + 1] = 1.0  # query delimiter
        x[story + 1: story + 1 + n, : self.bits] = data[query]
        x[story + 1 + n, self.bits + 1] = 1.0
        y = np.zeros((total, self.target_size), np.float32)
        y[total - n:] = data[query + 1]
        m = np.zeros(total, np.float32)
        m[total - n:] = 1.0
        return x, y, m

    def sample(self, rng: np.random.Generator, levels) -> Batch:
        return _pack([self.sample_one(rng, int(level)) for level in levels], levels)


class PrioritySortTask:
    """Priority sort: ``level`` random binary vectors, each with a priority in U(−1, 1)
    on an extra channel; after a delimiter, output the ``ceil(0.8·level)`` vectors of
    highest priority, highest first (paper: 20 in, 16 out).

    Input channels: ``bits`` + priority + delimiter.
    """

    def __init__(self, bits: int = 6):
        self.bits = bits
        self.input_size = bits + 2
        self.target_size = bits

    def sample_one(self, rng: np.random.Generator, level: int):
        L = max(level, 1)
        out = int(np.ceil(0.8 * L))
        data = rng.integers(0, 2, size=(L, self.bits)).astype(np.float32)
        priority = rng.uniform(-1, 1, size=L).astype(np.float32)
        x = np.zeros((L + 1 + out, self.input_size), np.float32)
        x[:L, : self.bits] = data
        x[:L, self.bits] = priority
        x[L, self.bits + 1] = 1.0
        order = np.argsort(-priority, kind="stable")[:out]
        y = np.zeros((L + 1 + out, self.target_size), np.float32)
        y[L + 1:] = data[order]
        m = np.zeros(L + 1 + out, np.float32)
        m[L + 1:] = 1.0
        return x, y, m

    def sample(self, rng: np.random.Generator, levels) -> Batch:
        return _pack([self.sample_one(rng, int(level)) for level in levels], levels)


TASKS = {"copy": CopyTask, "associative_recall": AssociativeRecallTask, "priority_sort": PrioritySortTask}


def make_task(name: str, **options):
    """``"copy"`` | ``"associative_recall"`` | ``"priority_sort"`` -> a task object."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name](**options)
