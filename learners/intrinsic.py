"""The intrinsic reward stream: pseudo-count bonuses for the frames a learner batch holds.

The bonus of transition t is the bonus of the observation it leads to, x_{t+1}
(Bellemare et al. 2016: the agent is rewarded for reaching novel states). The density model
(:class:`learners.exploration.PseudoCountBonus`) is trained online on those frames in time
order. ``frame_fraction < 1`` trains on and scores only a random subset of the
transitions and scales their bonus by ``1 / frame_fraction`` (the others get 0), which keeps
the expected intrinsic reward and divides the model's cost; 1.0 is the papers' setting.
"""

from __future__ import annotations

import torch

from learners.exploration import PseudoCountBonus, PseudoCountConfig


class IntrinsicRewards:
    def __init__(self, config: PseudoCountConfig, *, frame_fraction: float = 1.0, seed: int = 0):
        if not 0.0 < frame_fraction <= 1.0:
            raise ValueError(f"frame_fraction must be in (0, 1], got {frame_fraction}")
        self.model = PseudoCountBonus(config)
        self.frame_fraction = frame_fraction
        self._generator = torch.Generator().manual_seed(seed)
        self.last_stats: dict = {}

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        """``observations`` ``[T+1, B, C, H, W]`` uint8 -> bonus ``[T, B]`` for x_1 … x_T."""
        frames = observations[1:]
        T, B = frames.shape[:2]
        if self.frame_fraction >= 1.0:
            bonus, stats = self.model.bonus(frames)
        else:
            chosen = torch.rand(T * B, generator=self._generator) < self.frame_fraction
            bonus = torch.zeros(T * B)
            if bool(chosen.any()):
                picked = frames.flatten(0, 1)[chosen]  # stays in time-major order
                sub_bonus, stats = self.model.bonus(picked[:, None])
                bonus[chosen] = sub_bonus[:, 0] / self.frame_fraction
            else:
                stats = {}
            bonus = bonus.view(T, B)
        self.last_stats = stats
        return bonus

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self._generator.set_state(state["generator"])
