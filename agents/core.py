"""The recurrent-core contract every memory model in engram implements.

A core turns one time step of torso features into core features, carrying a state
between steps. The LSTM baseline, SAM / DAM / SDNC and STRAW all implement it, so the
`Agent`, the actors, the learner and the BPTT executor never need to know which one runs.

State is a flat ``dict[str, Tensor]`` with the batch dimension first. Episode boundaries
are handled by the agent through :meth:`RecurrentCore.reset_where`, which by default
replaces the state of finished sequences with a fresh initial state.

Stochastic internal choices (STRAW's re-plan gate, STRAWe's latent noise) are sampled by
the core when ``replay`` is ``None`` and returned in ``CoreOutput.decisions``; when the
learner passes the same tensors back through ``replay`` the core must reproduce exactly
what the actor computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

State = dict[str, torch.Tensor]


@dataclass
class CoreOutput:
    """What one core step returns besides its new state.

    Attributes:
        features: ``[B, output_size]`` input to the value head (and to the policy head
            unless ``policy_logits`` is given).
        policy_logits: ``[B, A]`` or ``None``. Cores that choose actions themselves
            (STRAW reads its action plan) return logits here and the agent uses them
            instead of its policy head.
        decisions: stochastic choices, each ``[B, ...]``, recorded by the actor and
            replayed by the learner.
        aux_losses: per-sequence auxiliary loss terms, each ``[B]`` (e.g. STRAW's
            commitment cost, STRAWe's KL); the learner weights and sums them.
        telemetry: detached ``[B, ...]`` values for dashboards (re-plan flags, memory
            slots touched); never part of a loss.
    """

    features: torch.Tensor
    policy_logits: torch.Tensor | None = None
    decisions: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    telemetry: dict[str, torch.Tensor] = field(default_factory=dict)


class RecurrentCore(nn.Module):
    """Base class of the recurrent cores.

    Subclasses set ``output_size`` and implement :meth:`initial_state` and
    :meth:`forward`. Cores whose state is large (SAM's memory) override
    :meth:`pack_state` / :meth:`unpack_state` so that only what changed since the
    episode reset crosses the wire.
    """

    output_size: int

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        """A fresh state for ``batch_size`` sequences, each tensor ``[B, ...]``."""
        raise NotImplementedError

    def forward(
        self,
        features: torch.Tensor,
        state: State,
        replay: dict[str, torch.Tensor] | None = None,
    ) -> tuple[CoreOutput, State]:
        """One step: ``features`` ``[B, F]`` -> (``CoreOutput``, new state)."""
        raise NotImplementedError

    def reset_where(self, state: State, first: torch.Tensor) -> State:
        """Reset the sequences whose ``first`` flag (``[B]`` bool) is set.

        The default rebuilds those rows from :meth:`initial_state`. It is written
        with ``torch.where`` so it stays differentiable for the rows that continue.
        """
        if not bool(first.any()):
            return state
        batch_size = first.shape[0]
        fresh = self.initial_state(batch_size, device=first.device)
        reset: State = {}
        for name, value in state.items():
            mask = first.view(batch_size, *([1] * (value.dim() - 1)))
            reset[name] = torch.where(mask, fresh[name].to(value.dtype), value)
        return reset

    def open_journal(self, state: State):
        """For checkpointed BPTT (``learners/bptt/``): a core that updates part of
        ``state`` in place returns a journal of those changes, opened now; others ``None``."""
        return None

    def pack_state(self, state: State) -> dict[str, torch.Tensor]:
        """The state in a compact form for the rollout wire (default: unchanged)."""
        return {name: value.detach() for name, value in state.items()}

    def unpack_state(self, packed: dict[str, torch.Tensor]) -> State:
        """Inverse of :meth:`pack_state`; must round-trip exactly."""
        return dict(packed)

    def concat_packed(self, packed_states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Join packed states of several batches along B (the learner stacks rollouts).

        The default concatenates each entry; cores whose packed entries vary in size
        between batches (SAM's touched rows) override it.
        """
        return {name: torch.cat([p[name] for p in packed_states], 0) for name in packed_states[0]}
