"""IMPALA's three loss terms (Espeholt et al. 2018, §4.2).

Each is *summed* over the batch's ``[T, B]`` steps, as in IMPALA and TorchBeast. A
per-parameter optimiser (Adam, RMSProp with a small ε) does not care about the scale; the
gradient-norm clip (40) and RMSProp's ε do. At this scale the FC and LSTM gradients have an
RMS of 5e-3 and 1.3e-2 per element, below IMPALA's ε = 0.01, which is why RMSProp at
IMPALA's settings barely moves those layers (``python -m benchmarks.learning_diagnosis``;
benchmarks/RESULTS.md, "Learning on Atari").
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from learners.vtrace import action_log_probs


def policy_gradient_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """−Σ ρ_s (r_s + γ v_{s+1} − V(x_s)) log π(a_s|x_s); ``advantages`` carry no gradient."""
    return -(action_log_probs(logits, actions) * advantages.detach()).sum()


def baseline_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """½ Σ (v_s − V(x_s))²."""
    return 0.5 * (targets.detach() - values).pow(2).sum()


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Σ_s Σ_a π log π (the negative entropy; minimising it keeps the policy spread)."""
    log_policy = F.log_softmax(logits, dim=-1)
    return (log_policy.exp() * log_policy).sum()


ADVANTAGE_NORMALIZATIONS = ("none", "batch", "running")


class AdvantageNormalizer:
    """Puts the policy-gradient advantages on a fixed scale before the policy loss.

    IMPALA's loss weighs the policy term by the advantages' own scale, which depends on the
    game: on Pong (a point every ~40 steps) their standard deviation is about 0.07, so the
    value and entropy terms outweigh the policy term by an order of magnitude more than on
    Breakout (0.27), and the shared torso and LSTM follow the value loss
    (benchmarks/RESULTS.md, "Learning on Atari").

    * ``"none"``: IMPALA's form, A unchanged.
    * ``"batch"``: (A − mean) / (std + 1e-8) over the batch's ``[T, B]`` steps, as the PPO
      Atari baselines do.
    * ``"running"``: A / √(E[A²] + 1e-8), with E[A²] a bias-corrected moving average over
      updates (decay ``decay``); the scale half of PopArt (Hessel et al. 2018), so a batch
      without reward events is not blown up to unit scale.
    """

    def __init__(self, mode: str = "none", decay: float = 0.99):
        if mode not in ADVANTAGE_NORMALIZATIONS:
            raise ValueError(f"unknown advantage normalization {mode!r}; expected one of {', '.join(ADVANTAGE_NORMALIZATIONS)}")
        self.mode = mode
        self.decay = decay
        self.second_moment = 0.0
        self.updates = 0

    def __call__(self, advantages: torch.Tensor) -> torch.Tensor:
        advantages = advantages.detach()
        if self.mode == "batch":
            return (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-8)
        if self.mode == "running":
            self.updates += 1
            self.second_moment = self.decay * self.second_moment + (1 - self.decay) * float(advantages.pow(2).mean())
            unbiased = self.second_moment / (1 - self.decay**self.updates)
            return advantages / math.sqrt(unbiased + 1e-8)
        return advantages

    def state_dict(self) -> dict:
        return {"second_moment": self.second_moment, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.second_moment = float(state["second_moment"])
        self.updates = int(state["updates"])
