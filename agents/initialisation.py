"""Weight initialisation of the torso and heads (the cores keep their own).

``"orthogonal"``: orthogonal matrices (Saxe et al. 2014) with gain √2 for the torso's
ReLU layers, 0.01 for the policy head (a near-uniform first policy) and 1 for the value
head, zero biases; the scheme of the PPO / A2C Atari baselines (OpenAI Baselines,
CleanRL). Its conv weights are about 2.4× larger than torch's default, so the first
optimiser steps move them by a smaller share of their size. ``"torch"``: PyTorch's
defaults, as built.
"""

from __future__ import annotations

import math

from torch import nn

INITS = ("orthogonal", "torch")


def _orthogonal(module: nn.Module, gain: float) -> None:
    nn.init.orthogonal_(module.weight, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def initialise(agent, scheme: str) -> None:
    """Re-initialise ``agent.torso``, ``agent.policy_head`` and ``agent.value_head`` in place."""
    if scheme == "torch":
        return
    if scheme != "orthogonal":
        raise ValueError(f"unknown init {scheme!r}; expected one of {', '.join(INITS)}")
    for module in agent.torso.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            _orthogonal(module, math.sqrt(2.0))
    _orthogonal(agent.policy_head, 0.01)
    _orthogonal(agent.value_head, 1.0)
