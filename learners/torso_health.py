"""Dead ReLU units in the observation encoder, the failure that blinds an agent.

A ReLU unit (a channel of a conv map, a feature of a dense layer) that is zero for every
input gets no gradient and never recovers. When the first conv layer's channels all die
the torso's output no longer depends on the frame, and the policy cannot learn whatever
the loss says (seen on Pong: ``benchmarks/RESULTS.md``, "Learning on Atari"). This
measures, on a batch of observations, the share of units of each ReLU that are positive
for at least one of them.
"""

from __future__ import annotations

import torch
from torch import nn


def _alive_share(activations: torch.Tensor) -> float:
    """``[N, C, ...]`` -> the share of the C units positive somewhere in the batch."""
    per_unit = activations.transpose(0, 1).reshape(activations.shape[1], -1)
    return float((per_unit > 0).any(dim=1).float().mean())


@torch.no_grad()
def alive_fractions(torso: nn.Module, observations: torch.Tensor) -> dict[str, float]:
    """``{"torso/alive/<layer>": share}`` for every ``nn.ReLU`` inside ``torso`` and for its
    output (which every engram torso passes through a ReLU)."""
    captured: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, output, name=name: captured.__setitem__(name, output))
        for name, module in torso.named_modules()
        if isinstance(module, nn.ReLU)
    ]
    try:
        output = torso(observations)
    finally:
        for handle in handles:
            handle.remove()
    shares = {f"torso/alive/{name.replace('.', '_')}": _alive_share(value) for name, value in captured.items()}
    shares["torso/alive/output"] = _alive_share(output)
    return shares
