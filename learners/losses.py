"""IMPALA's three loss terms (Espeholt et al. 2018, §4.2).

Each is *summed* over the batch's ``[T, B]`` steps, as in IMPALA and TorchBeast. A
per-parameter optimiser (Adam, RMSProp with a small ε) does not care about the scale; the
gradient-norm clip (40) and RMSProp's ε do. At this scale the FC and LSTM gradients have an
RMS of 5e-3 and 1.3e-2 per element, below IMPALA's ε = 0.01, which is why RMSProp at
IMPALA's settings barely moves those layers (``python -m benchmarks.learning_diagnosis``;
benchmarks/RESULTS.md, "Learning on Atari").
"""

from __future__ import annotations

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
