"""V-trace off-policy targets (Espeholt et al. 2018, "IMPALA", §4.1, eq. 1).

    v_s = V(x_s) + Σ_{t=s}^{s+n−1} γ^{t−s} (Π_{i=s}^{t−1} c_i) δ_t V,
    δ_t V = ρ_t (r_t + γ_t V(x_{t+1}) − V(x_t)),
    ρ_t = min(ρ̄, π(a_t|x_t)/μ(a_t|x_t)),   c_i = λ min(c̄, π(a_i|x_i)/μ(a_i|x_i)).

Computed backwards with the recursion v_s − V(x_s) = δ_s V + γ_s c_s (v_{s+1} − V(x_{s+1})).
The policy-gradient advantage is ρ^pg_s (r_s + γ_s v_{s+1} − V(x_s)) with its own clip.
All tensors are time-major ``[T, B]``; discounts γ_t already hold zeros at episode ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass
class VTraceReturns:
    vs: torch.Tensor  # [T, B] value targets v_s
    pg_advantages: torch.Tensor  # [T, B] ρ^pg_s (r_s + γ_s v_{s+1} − V(x_s))
    log_rhos: torch.Tensor  # [T, B] log π/μ of the taken actions


def action_log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[T, B, A]``, ``actions`` ``[T, B]`` -> log π(a_t|x_t) ``[T, B]``."""
    return F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def from_importance_weights(
    *,
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    """V-trace targets from log importance weights; all inputs ``[T, B]`` except
    ``bootstrap_value`` ``[B]`` = V(x_T). Thresholds of ``None`` mean no clipping."""
    rhos = torch.exp(log_rhos)
    clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
    cs = lambda_ * rhos.clamp(max=1.0)  # c̄ = 1
    values_next = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = clipped_rhos * (rewards + discounts * values_next - values)

    corrections = torch.empty_like(values)
    running = torch.zeros_like(bootstrap_value)
    for t in reversed(range(values.shape[0])):
        running = deltas[t] + discounts[t] * cs[t] * running
        corrections[t] = running
    vs = values + corrections

    vs_next = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_rhos = rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
    pg_advantages = pg_rhos * (rewards + discounts * vs_next - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages, log_rhos=log_rhos)


def from_logits(
    *,
    behaviour_logits: torch.Tensor,
    target_logits: torch.Tensor,
    actions: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    """V-trace for softmax policies: μ from ``behaviour_logits``, π from ``target_logits``
    (both ``[T, B, A]``). No gradient flows through the returns."""
    log_rhos = action_log_probs(target_logits.detach(), actions) - action_log_probs(behaviour_logits, actions)
    return from_importance_weights(
        log_rhos=log_rhos,
        discounts=discounts,
        rewards=rewards,
        values=values.detach(),
        bootstrap_value=bootstrap_value.detach(),
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
        lambda_=lambda_,
    )
