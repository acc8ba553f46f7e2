"""The `Agent`: torso → recurrent core → policy and value heads, one batched step at a time.

The core reads ``[torso(obs_t), one_hot(a_{t-1}), clip(r_{t-1})]`` as in IMPALA
(Espeholt et al. 2018, §5). ``first`` marks observations that begin an episode: for those
rows the core state is reset and the previous action and reward are zeroed *before* the
step, so an episode never sees its predecessor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from agents.core import RecurrentCore, State


@dataclass
class AgentOutput:
    """One step's outputs.

    Attributes:
        logits: ``[B, A]`` unnormalised policy log-probabilities.
        value: ``[B]`` state-value estimate V(x_t).
        decisions: stochastic internal choices ``[B, ...]`` to replay on the learner.
        aux_losses: per-sequence auxiliary losses ``[B]`` from the core.
        telemetry: detached per-sequence values for dashboards.
    """

    logits: torch.Tensor
    value: torch.Tensor
    decisions: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    telemetry: dict[str, torch.Tensor] = field(default_factory=dict)


class Agent(nn.Module):
    """Composes a torso, a :class:`RecurrentCore` and linear heads.

    Args:
        torso: maps ``[B, *observation_shape]`` to ``[B, torso.output_size]``.
        core_factory: ``core_factory(input_size) -> RecurrentCore``; the input size is
            the torso's output plus the one-hot previous action and the previous reward.
        num_actions: size of the discrete action space A.
        reward_clip: previous rewards are clamped to ``[-reward_clip, reward_clip]``
            before they enter the core.
        feature_norm: put the core's features through a LayerNorm (Ba et al. 2016) before
            the heads, so that the heads see them on a fixed scale whatever the core's own
            scale; a core that makes its own logits (STRAW) has only its value head's input
            normalised.
    """

    def __init__(self, torso: nn.Module, core_factory, num_actions: int, reward_clip: float, feature_norm: bool):
        super().__init__()
        self.torso = torso
        self.num_actions = num_actions
        self.reward_clip = reward_clip
        self.core: RecurrentCore = core_factory(torso.output_size + num_actions + 1)
        self.feature_norm = nn.LayerNorm(self.core.output_size) if feature_norm else nn.Identity()
        self.policy_head = nn.Linear(self.core.output_size, num_actions)
        self.value_head = nn.Linear(self.core.output_size, 1)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        return self.core.initial_state(batch_size, device)

    def open_journal(self, state: State):
        """The core's journal of in-place state changes, or ``None`` (see ``RecurrentCore``)."""
        return self.core.open_journal(state)

    def pack_state(self, state: State) -> dict[str, torch.Tensor]:
        return self.core.pack_state(state)

    def unpack_state(self, packed: dict[str, torch.Tensor]) -> State:
        return self.core.unpack_state(packed)

    def concat_packed(self, packed_states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return self.core.concat_packed(packed_states)

    def step(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        first: torch.Tensor,
        state: State,
        replay: dict[str, torch.Tensor] | None = None,
    ) -> tuple[AgentOutput, State]:
        """One batched time step.

        Args:
            obs: ``[B, *obs_shape]`` (uint8 frames or float vectors).
            prev_action: ``[B]`` int64, the action taken before ``obs``.
            prev_reward: ``[B]`` float, the raw reward received before ``obs``.
            first: ``[B]`` bool, True where ``obs`` is the first of a new episode.
            state: the core state before this step.
            replay: decisions recorded by the actor for this step, or None to sample.
        """
        first = first.bool()
        state = self.core.reset_where(state, first)
        dtype = self.value_head.weight.dtype
        keep = (~first).to(dtype)
        action_one_hot = F.one_hot(prev_action.long(), self.num_actions).to(dtype) * keep[:, None]
        reward = prev_reward.to(dtype).clamp(-self.reward_clip, self.reward_clip) * keep
        core_input = torch.cat([self.torso(obs), action_one_hot, reward[:, None]], dim=1)
        core_out, new_state = self.core(core_input, state, replay)
        features = self.feature_norm(core_out.features)
        logits = core_out.policy_logits
        if logits is None:
            logits = self.policy_head(features)
        value = self.value_head(features).squeeze(1)
        output = AgentOutput(
            logits=logits,
            value=value,
            decisions=core_out.decisions,
            aux_losses=core_out.aux_losses,
            telemetry=core_out.telemetry,
        )
        return output, new_state
