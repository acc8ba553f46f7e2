"""Does a decoded rollout fit the learner that is about to consume it?

:func:`actors.wire.decode` checks that a message is well formed on its own terms (dtypes,
the ``(T, B)`` prefixes agree). That is not enough to train on it: an action out of
range, another unroll length, another observation width or a core state of the wrong
shape decodes fine and then raises deep inside the learner. :class:`RolloutSpec` holds
what the learner expects, and :meth:`RolloutSpec.check` raises :class:`RolloutRejected`
naming the first mismatch, so the driver drops that rollout alone and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actors.wire import Rollout, RolloutDecodeError


class RolloutRejected(RolloutDecodeError):
    """A well-formed rollout that this learner cannot train on; the text says why."""


@dataclass(frozen=True)
class ArraySpec:
    """dtype and trailing shape of a per-sequence array; ``None`` in the shape = any size."""

    dtype: str
    shape: tuple[int | None, ...]

    def mismatch(self, array: np.ndarray) -> str | None:
        if array.dtype.name != self.dtype:
            return f"dtype {array.dtype.name}, expected {self.dtype}"
        if len(array.shape) != len(self.shape) or any(
            want is not None and got != want for got, want in zip(array.shape, self.shape)
        ):
            expected = tuple("*" if d is None else d for d in self.shape)
            return f"shape {array.shape}, expected {expected}"
        return None


@dataclass(frozen=True)
class RolloutSpec:
    """What one learner accepts.

    Attributes:
        unroll_length: T.
        observation: one observation ``[*obs]``.
        num_actions: A; actions must lie in ``[0, A)``.
        state: the packed core state per key, batch dimension first (``None`` = the
            batch size, or a length that varies, like SAM's touched-row lists).
        decisions: the recorded decisions per key, ``[T+1, B, ...]`` (leading dims ``None``).
    """

    unroll_length: int
    observation: ArraySpec
    num_actions: int
    state: dict[str, ArraySpec]
    decisions: dict[str, ArraySpec]

    @classmethod
    def from_agent(cls, agent, observation_shape, observation_dtype, unroll_length: int) -> "RolloutSpec":
        """Read the state and decision layout off one step of a fresh ``agent`` (batch 1)."""
        with torch.no_grad():
            state = agent.initial_state(1)
            packed = agent.pack_state(state)
            obs = torch.zeros((1, *observation_shape), dtype=getattr(torch, np.dtype(observation_dtype).name))
            output, _ = agent.step(
                obs, torch.zeros(1, dtype=torch.int64), torch.zeros(1), torch.ones(1, dtype=torch.bool), state
            )

        def layout(tensor: torch.Tensor, leading: int) -> ArraySpec:
            # A dimension that is empty in a fresh state (rows touched so far) may grow.
            trailing = tuple(None if d == 0 else d for d in tensor.shape[1:])
            return ArraySpec(str(tensor.dtype).removeprefix("torch."), (None,) * leading + trailing)

        return cls(
            unroll_length=unroll_length,
            observation=ArraySpec(np.dtype(observation_dtype).name, tuple(observation_shape)),
            num_actions=agent.num_actions,
            state={name: layout(value, 1) for name, value in packed.items()},
            decisions={name: layout(value, 2) for name, value in output.decisions.items()},
        )

    def check(self, rollout: Rollout, newest_version: int) -> None:
        """Raise :class:`RolloutRejected` if ``rollout`` cannot join a batch of this learner."""
        T, B = rollout.unroll_length, rollout.num_envs
        if T != self.unroll_length:
            raise RolloutRejected(f"unroll length {T}, expected {self.unroll_length}")
        problem = self.observation.mismatch(rollout.observations[0, 0])
        if problem:
            raise RolloutRejected(f"observations: {problem}")
        if rollout.behaviour_logits.shape[2:] != (self.num_actions,):
            raise RolloutRejected(
                f"behaviour_logits: shape {rollout.behaviour_logits.shape}, expected {(T + 1, B, self.num_actions)}"
            )
        for name in ("actions", "initial_prev_action"):
            values = getattr(rollout, name)
            if values.size and (values.min() < 0 or values.max() >= self.num_actions):
                raise RolloutRejected(
                    f"{name}: values in [{values.min()}, {values.max()}], expected [0, {self.num_actions})"
                )
        self._check_dict("initial_state", rollout.initial_state, self.state, batch=B)
        self._check_dict("decisions", rollout.decisions, self.decisions, batch=None)
        arrays = {name: getattr(rollout, name) for name in ("observations", "rewards", "behaviour_logits", "initial_prev_reward")}
        for name, values in (*arrays.items(), *rollout.initial_state.items(), *rollout.decisions.items()):
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise RolloutRejected(f"{name}: holds NaN or infinite values")
        if rollout.policy_version > newest_version:
            raise RolloutRejected(
                f"policy version {rollout.policy_version}, but the newest published is {newest_version}"
            )

    @staticmethod
    def _check_dict(field: str, arrays: dict[str, np.ndarray], spec: dict[str, ArraySpec], batch: int | None) -> None:
        if set(arrays) != set(spec):
            missing, extra = sorted(set(spec) - set(arrays)), sorted(set(arrays) - set(spec))
            raise RolloutRejected(f"{field}: missing keys {missing}, unexpected keys {extra}")
        for name, array in arrays.items():
            problem = spec[name].mismatch(array)
            if problem is None and batch is not None and array.shape[0] != batch:
                problem = f"batch {array.shape[0]}, expected {batch}"
            if problem:
                raise RolloutRejected(f"{field}.{name}: {problem}")
