"""Stack decoded rollouts into one time-major learner batch ``[T(+1), B, ...]``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actors.wire import Rollout
from agents.core import State


@dataclass
class Batch:
    """B = the summed env count of the stacked rollouts.

    ``observations`` ``[T+1, B, *obs]``, ``firsts`` ``[T+1, B]``,
    ``prev_actions`` / ``prev_rewards`` ``[T+1, B]`` (the agent's inputs at x_t),
    ``actions`` / ``rewards`` ``[T, B]``, ``behaviour_logits`` ``[T+1, B, A]``,
    ``decisions[name]`` ``[T+1, B, ...]``, ``initial_state`` batch-first ``[B, ...]``.
    """

    observations: torch.Tensor
    firsts: torch.Tensor
    prev_actions: torch.Tensor
    prev_rewards: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    behaviour_logits: torch.Tensor
    decisions: dict[str, torch.Tensor]
    initial_state: State
    policy_versions: list[int]

    @property
    def unroll_length(self) -> int:
        return int(self.actions.shape[0])

    def to(self, device: torch.device) -> "Batch":
        """A copy on ``device`` (frames stay uint8, so the copy is small)."""
        fields = {}
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                fields[name] = value.to(device, non_blocking=True)
            elif isinstance(value, dict):
                fields[name] = {k: v.to(device, non_blocking=True) for k, v in value.items()}
            else:
                fields[name] = value
        return Batch(**fields)

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[1])


def _cat(arrays: list[np.ndarray], axis: int) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(arrays, axis=axis))


def stack_rollouts(rollouts: list[Rollout], agent) -> Batch:
    """Concatenate rollouts along B; ``agent`` unpacks and joins their initial states."""
    lengths = {r.unroll_length for r in rollouts}
    if len(lengths) != 1:
        raise ValueError(f"rollouts of different lengths {sorted(lengths)} cannot share a batch")
    actions = _cat([r.actions for r in rollouts], 1)
    rewards = _cat([r.rewards for r in rollouts], 1)
    prev_actions = torch.cat([_cat([r.initial_prev_action for r in rollouts], 0)[None], actions], 0)
    prev_rewards = torch.cat([_cat([r.initial_prev_reward for r in rollouts], 0)[None], rewards], 0)
    packed = [{k: torch.from_numpy(np.array(v)) for k, v in r.initial_state.items()} for r in rollouts]
    initial_state = agent.unpack_state(agent.concat_packed(packed))
    decision_names = rollouts[0].decisions.keys()
    return Batch(
        observations=_cat([r.observations for r in rollouts], 1),
        firsts=_cat([r.firsts for r in rollouts], 1),
        prev_actions=prev_actions,
        prev_rewards=prev_rewards,
        actions=actions,
        rewards=rewards,
        behaviour_logits=_cat([r.behaviour_logits for r in rollouts], 1),
        decisions={name: _cat([r.decisions[name] for r in rollouts], 1) for name in decision_names},
        initial_state=initial_state,
        policy_versions=[r.policy_version for r in rollouts],
    )
