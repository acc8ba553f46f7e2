"""The level curriculum of the algorithmic memory tasks (Rae et al. 2016, Supp. E), which
:mod:`learners.memory_task_trainer` steps after each update."""

from __future__ import annotations

import numpy as np


class Curriculum:
    """Levels drawn from U(1, h); h doubles (up to ``maximum``) once the loss averaged
    over ``patience`` consecutive updates is below ``threshold`` (Rae et al. 2016, Supp. E).

    Args:
        start: the initial h.
        maximum: the largest h.
        threshold: loss per scored bit under which the level is considered learned.
        patience: number of consecutive updates the loss must stay under the threshold.
    """

    def __init__(self, start: int = 1, maximum: int = 1024, threshold: float = 0.05,
                 patience: int = 50):
        if not 1 <= start <= maximum:
            raise ValueError(f"need 1 <= start <= maximum, got start={start}, maximum={maximum}")
        self.level = start
        self.maximum = maximum
        self.threshold = threshold
        self.patience = patience
        self._under = 0

    def sample_levels(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        return rng.integers(1, self.level + 1, size=batch_size)

    def update(self, loss: float) -> bool:
        """Record one update's loss; returns True when h doubled."""
        self._under = self._under + 1 if loss < self.threshold else 0
        if self._under >= self.patience and self.level < self.maximum:
            self.level = min(2 * self.level, self.maximum)
            self._under = 0
            return True
        return False
