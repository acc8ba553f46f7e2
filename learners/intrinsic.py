"""The intrinsic reward stream: pseudo-count bonuses for the frames a learner batch holds.

The bonus of transition t is the bonus of the observation it leads to, x_{t+1}
(Bellemare et al. 2016: the agent is rewarded for reaching novel states). The density model
(:class:`learners.exploration.PseudoCountBonus`) is trained online on those frames in time
order. ``frame_fraction = 1`` scores every transition, the papers' setting. Below 1 the model
trains on and scores only part of them, chosen one of two ways (``subsample``):

* ``random``: each transition is scored with probability ``frame_fraction`` and its bonus
  scaled by ``1 / frame_fraction``; the others get 0. The expected bonus is kept, but which
  transitions pay is a coin toss that has nothing to do with the agent's actions: at 0.05 a
  transition's bonus varies by about √((1 − f)/f) ≈ 4.4 times its mean on that toss alone.
* ``hold``: each env's unroll (a column of the ``[T, B]`` batch) scores
  ``max(1, round(frame_fraction · T))`` of its transitions at random steps, and every
  transition of the column takes the bonus of the nearest scored one, unscaled. Frames a
  few steps apart are alike, so the bonus stays a function of where the agent is, not of the
  toss. It may carry a bonus across an episode boundary inside an unroll.
"""

from __future__ import annotations

from typing import Literal

import torch

from learners.exploration import PseudoCountBonus, PseudoCountConfig

SUBSAMPLING = ("random", "hold")


class IntrinsicRewards:
    def __init__(
        self, config: PseudoCountConfig, *, frame_fraction: float = 1.0,
        subsample: Literal["random", "hold"] = "random", seed: int = 0,
    ):
        if not 0.0 < frame_fraction <= 1.0:
            raise ValueError(f"frame_fraction must be in (0, 1], got {frame_fraction}")
        if subsample not in SUBSAMPLING:
            raise ValueError(f"subsample must be one of {', '.join(SUBSAMPLING)}, got {subsample!r}")
        self.model = PseudoCountBonus(config)
        self.frame_fraction = frame_fraction
        self.subsample = subsample
        self._generator = torch.Generator().manual_seed(seed)
        self.last_stats: dict = {}

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        """``observations`` ``[T+1, B, C, H, W]`` uint8 -> bonus ``[T, B]`` for x_1 … x_T."""
        frames = observations[1:]
        if self.frame_fraction >= 1.0:
            bonus, stats = self.model.bonus(frames)
        elif self.subsample == "hold":
            bonus, stats = self._held(frames)
        else:
            bonus, stats = self._random(frames)
        self.last_stats = stats
        return bonus

    def _random(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
        T, B = frames.shape[:2]
        chosen = torch.rand(T * B, generator=self._generator) < self.frame_fraction
        bonus = torch.zeros(T * B)
        stats = {}
        if bool(chosen.any()):
            picked = frames.flatten(0, 1)[chosen]  # stays in time-major order
            sub_bonus, stats = self.model.bonus(picked[:, None])
            bonus[chosen] = sub_bonus[:, 0] / self.frame_fraction
        return bonus.view(T, B), stats

    def _held(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
        T, B = frames.shape[:2]
        per_column = max(1, round(self.frame_fraction * T))
        draw = torch.rand(T, B, generator=self._generator)
        steps = draw.argsort(dim=0)[:per_column].sort(dim=0).values  # [k, B] scored steps, earliest first
        chosen = torch.zeros(T, B, dtype=torch.bool)
        chosen.scatter_(0, steps, True)
        sub_bonus, stats = self.model.bonus(frames[chosen][:, None])  # boolean indexing keeps time-major order
        scored = torch.zeros(T, B)
        scored[chosen] = sub_bonus[:, 0]
        distance = (torch.arange(T)[:, None, None] - steps[None]).abs()  # [T, k, B]
        nearest = steps.gather(0, distance.argmin(dim=1))  # [T, B] the nearest scored step (the earlier on a tie)
        return scored.gather(0, nearest), stats

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self._generator.set_state(state["generator"])
