"""The IMPALA loss (Espeholt et al. 2018, §4.2), in one place: :func:`impala_loss`.

    L = − Σ_s ρ^pg_s Â_s log π(a_s|x_s)  +  c_V · ½ Σ_s (v_s − V(x_s))²  +  c_H · Σ_s Σ_a π log π

with v_s the V-trace target (:mod:`learners.vtrace`), Â_s = r_s + γ_s v_{s+1} − V(x_s) the
policy-gradient advantage (optionally put on a fixed scale: :class:`AdvantageNormalizer`),
and the core's auxiliary losses added with their own weights. The three terms are below.

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

from dataclasses import dataclass

from learners import vtrace
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

    def __init__(self, mode: str = "none", decay: float = 0.99, replicas=None):
        if mode not in ADVANTAGE_NORMALIZATIONS:
            raise ValueError(f"unknown advantage normalization {mode!r}; expected one of {', '.join(ADVANTAGE_NORMALIZATIONS)}")
        self.mode = mode
        self.decay = decay
        self.replicas = replicas  # a learners.data_parallel.ReplicaSum: the moments of the whole batch
        self.second_moment = 0.0
        self.updates = 0

    def _moments(self, advantages: torch.Tensor) -> tuple[float, float]:
        """Mean and second moment of the whole batch's advantages, over every replica's shard."""
        total, squares, count = self.replicas.values(
            [float(advantages.sum()), float(advantages.pow(2).sum()), advantages.numel()]
        )
        return total / count, squares / count

    def __call__(self, advantages: torch.Tensor) -> torch.Tensor:
        advantages = advantages.detach()
        if self.mode == "batch":
            if self.replicas is None:
                return (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-8)
            mean, second = self._moments(advantages)
            return (advantages - mean) / (math.sqrt(max(second - mean**2, 0.0)) + 1e-8)
        if self.mode == "running":
            self.updates += 1
            second = self._moments(advantages)[1] if self.replicas is not None else float(advantages.pow(2).mean())
            self.second_moment = self.decay * self.second_moment + (1 - self.decay) * second
            unbiased = self.second_moment / (1 - self.decay**self.updates)
            return advantages / math.sqrt(unbiased + 1e-8)
        return advantages

    def state_dict(self) -> dict:
        return {"second_moment": self.second_moment, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.second_moment = float(state["second_moment"])
        self.updates = int(state["updates"])


@dataclass
class ImpalaLoss:
    """One batch's loss: the total to minimise and its parts, unweighted and summed over ``[T, B]``."""

    total: torch.Tensor
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor  # Σ π log π
    aux: dict[str, torch.Tensor]  # the core's auxiliary losses by name
    targets: vtrace.VTraceReturns
    values: torch.Tensor  # [T, B] V(x_s), detached
    value_targets: torch.Tensor  # [T, B] what V(x_s) was regressed on


def impala_loss(
    *,
    logits: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    behaviour_logits: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    baseline_cost: float,
    entropy_cost: float,
    clip_rho_threshold: float | None,
    clip_pg_rho_threshold: float | None,
    aux: dict[str, torch.Tensor] | None = None,
    aux_costs: dict[str, float] | None = None,
    normalize_advantages: AdvantageNormalizer | None = None,
    value_targets=None,
) -> ImpalaLoss:
    """The loss of the module docstring over ``[T, B]`` steps.

    Args:
        logits: ``[T, B, A]`` π's logits (with gradient); values: ``[T, B]`` V(x_s) (with gradient).
        bootstrap_value: ``[B]`` V(x_T); behaviour_logits: ``[T, B, A]`` μ's; actions: ``[T, B]``.
        rewards: ``[T, B]`` (already clipped, bonus included); discounts: ``[T, B]`` γ_s, 0 where
            the episode ended.
        aux / aux_costs: the core's auxiliary losses summed over ``[T, B]``, and their weights
            (a loss without a weight counts 0).
        normalize_advantages: scales Â before the policy term (None: IMPALA's form).
        value_targets: ``f(vs) -> targets`` replacing v_s in the value term (the exploration
            bonus's mixed Monte-Carlo targets); None keeps v_s.
    """
    targets = vtrace.from_logits(
        behaviour_logits=behaviour_logits, target_logits=logits, actions=actions, discounts=discounts,
        rewards=rewards, values=values, bootstrap_value=bootstrap_value,
        clip_rho_threshold=clip_rho_threshold, clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
    advantages = targets.pg_advantages if normalize_advantages is None else normalize_advantages(targets.pg_advantages)
    regressed_on = targets.vs if value_targets is None else value_targets(targets.vs)
    policy = policy_gradient_loss(logits, actions, advantages)
    value = baseline_loss(values, regressed_on)
    entropy = entropy_loss(logits)
    aux, aux_costs = aux or {}, aux_costs or {}
    total = policy + baseline_cost * value + entropy_cost * entropy
    for name, loss in aux.items():
        total = total + aux_costs.get(name, 0.0) * loss
    return ImpalaLoss(total, policy, value, entropy, aux, targets, values.detach(), regressed_on)
