"""1-D attentive read and write over the time axis of a plan (STRAW, Vezhnevets et al. 2016, §3).

STRAW borrows DRAW's Gaussian filterbank (Gregor et al. 2015, §3.2) and applies it along the
time axis of its plans. A patch of ``K`` filters is laid over the ``T`` columns of a plan:

    g = (g̃ + 1) / 2 · T                        grid centre
    δ = (T − 1) / (K − 1) · δ̃                  stride between filter centres
    μ_i = g + (i − K/2 − 0.5) · δ,  i = 1..K    filter centres
    F[i, τ] = exp(−(τ − μ_i)² / (2σ²)) / Z_i,   τ = 1..T,  Σ_τ F[i, τ] = 1

The network emits the unconstrained tuple (g̃, log δ̃, log σ², log γ); γ is the read/write
intensity. Reading a ``[R, T]`` plan gives the ``[R, K]`` patch ``β = γ · A Fᵀ``; writing a
``[R, K]`` patch ``p`` gives the ``[R, T]`` update ``(1/γ) · p F``.

Decisions taken here (the paper does not pin them down):
* columns are indexed τ = 1..T as in DRAW, so g̃ = −1 centres the grid half a column before
  the first column and g̃ = 1 on the last one;
* each row is normalised with a softmax over τ of the Gaussian log-density, which is the same
  normalisation as dividing by Z_i but cannot produce 0/0 when a narrow filter lies far
  outside the plan;
* with a single filter (K = 1) the stride has no effect and δ is taken as 0;
* log δ̃, log σ² and log γ are clamped to ``[-LOG_CLAMP, LOG_CLAMP]`` so that no step can
  overflow ``exp``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOG_CLAMP = 8.0
"""Bound on the log-parameters (stride, variance, intensity) before ``exp``."""

NUM_ATTENTION_PARAMETERS = 4
"""A linear layer emits (g̃, log δ̃, log σ², log γ) per sequence."""


@dataclass
class Attention:
    """A filterbank and its intensity for a batch of sequences.

    Attributes:
        filters: ``[B, K, T]`` the filterbank F; each row sums to one over T.
        intensity: ``[B]`` γ.
        centre: ``[B]`` g, in columns (1-based), for telemetry.
        stride: ``[B]`` δ, in columns.
    """

    filters: torch.Tensor
    intensity: torch.Tensor
    centre: torch.Tensor
    stride: torch.Tensor


def gaussian_filterbank(
    parameters: torch.Tensor, plan_length: int, patch_size: int
) -> Attention:
    """Build F from the raw attention parameters.

    Args:
        parameters: ``[B, 4]`` unconstrained (g̃, log δ̃, log σ², log γ), or ``[B, 3]``
            without log γ (then γ = 1).
        plan_length: T, the number of plan columns.
        patch_size: K, the number of filters.

    Returns:
        An :class:`Attention` with ``filters`` ``[B, K, T]``.
    """
    if parameters.dim() != 2 or parameters.shape[1] not in (3, 4):
        raise ValueError(
            f"attention parameters must be [B, 3] or [B, 4], got {tuple(parameters.shape)}"
        )
    centre_raw = parameters[:, 0]  # g̃
    log_stride = parameters[:, 1].clamp(-LOG_CLAMP, LOG_CLAMP)  # log δ̃
    log_variance = parameters[:, 2].clamp(-LOG_CLAMP, LOG_CLAMP)  # log σ²
    if parameters.shape[1] == 4:
        intensity = parameters[:, 3].clamp(-LOG_CLAMP, LOG_CLAMP).exp()  # γ
    else:
        intensity = torch.ones_like(centre_raw)

    centre = (centre_raw + 1.0) / 2.0 * plan_length  # g
    if patch_size > 1:
        stride = (plan_length - 1) / (patch_size - 1) * log_stride.exp()  # δ
    else:
        stride = torch.zeros_like(centre)
    device, dtype = parameters.device, parameters.dtype
    filter_index = torch.arange(1, patch_size + 1, device=device, dtype=dtype)  # i = 1..K
    offsets = filter_index - patch_size / 2.0 - 0.5  # i − K/2 − 0.5
    means = centre[:, None] + offsets[None, :] * stride[:, None]  # μ_i  [B, K]
    columns = torch.arange(1, plan_length + 1, device=device, dtype=dtype)  # τ = 1..T
    squared = (columns[None, None, :] - means[:, :, None]) ** 2  # [B, K, T]
    log_density = -squared / (2.0 * log_variance.exp()[:, None, None])
    filters = torch.softmax(log_density, dim=2)  # rows normalised over τ
    return Attention(filters=filters, intensity=intensity, centre=centre, stride=stride)


def read(plan: torch.Tensor, attention: Attention) -> torch.Tensor:
    """β = γ · A Fᵀ: ``plan`` ``[B, R, T]`` -> patch ``[B, R, K]``."""
    patch = torch.bmm(plan, attention.filters.transpose(1, 2))
    return attention.intensity[:, None, None] * patch


def write(patch: torch.Tensor, attention: Attention) -> torch.Tensor:
    """(1/γ) · p F: ``patch`` ``[B, R, K]`` -> plan update ``[B, R, T]``."""
    update = torch.bmm(patch, attention.filters)
    return update / attention.intensity[:, None, None]
