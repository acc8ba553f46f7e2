"""`RolloutWorker`: steps a vector of environments with a CPU copy of the agent.

It is a plain class so tests can drive it in-process; the driver wraps it with
``ray.remote`` to make the ``RolloutActor``. Each :meth:`RolloutWorker.unroll` call
produces one encoded :class:`~actors.wire.Rollout` of ``unroll_length`` steps.

The worker keeps the agent's output for the newest observation between calls: the
last step of one rollout (x_T, used by the learner only to bootstrap) is acted on as the
first step of the next, so every action is sampled exactly once. The core state is packed
*before* that step is computed, because some cores (SAM) update their memory in place:
the packed state is the next rollout's ``initial_state``, and it is what the worker
restores when new weights invalidate the cached step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from actors import wire
from actors.stepping import EnvStepper


class NonFiniteLogitsError(RuntimeError):
    """The agent's policy produced NaN or infinite logits: its weights are broken, not the sampler."""


@dataclass
class PublishedWeights:
    """A versioned handle on the learner's weights.

    ``source`` is a one-element list holding either a Ray ``ObjectRef`` or the state
    dict itself; the list keeps Ray from fetching the weights when the version is
    unchanged.
    """

    version: int
    source: list

    def resolve(self) -> dict[str, torch.Tensor]:
        (item,) = self.source
        if isinstance(item, dict):
            return item
        import ray

        return ray.get(item)


@dataclass(frozen=True)
class RolloutReceipt:
    """The few bytes the driver reads of a rollout, which itself goes straight to the learner."""

    actor_id: int
    env_steps: int


def _to_numpy(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy() for name, value in tensors.items()}


class RolloutWorker:
    """Owns ``env_factory()`` (a vector env) and ``agent_factory()`` (an ``Agent``).

    Args:
        actor_id: index reported in every rollout.
        env_factory: builds the vector env (not yet reset).
        agent_factory: builds the agent; weights arrive through :meth:`unroll`.
        unroll_length: T, agent steps per rollout.
        seed: seeds the env reset, action sampling and the core's own sampling.
        torch_threads: intra-op threads for inference (1 keeps actors out of each
            other's way on small machines).
    """

    def __init__(
        self,
        actor_id: int,
        env_factory: Callable[[], Any],
        agent_factory: Callable[[], torch.nn.Module],
        unroll_length: int,
        seed: int,
        torch_threads: int = 1,
    ):
        torch.set_num_threads(torch_threads)
        torch.manual_seed(seed)
        self.actor_id = actor_id
        self.unroll_length = unroll_length
        self.agent = agent_factory()
        self.agent.eval()
        self.policy_version = -1
        self.stepper = EnvStepper(env_factory(), self.agent, seed)
        self.num_envs = self.stepper.num_envs
        self._pending = None  # (AgentOutput, next state) for the current observation
        self._packed_before_pending = None  # packed state from before ``_pending`` was computed

    def set_weights(self, weights: PublishedWeights) -> None:
        if weights.version != self.policy_version:
            self.agent.load_state_dict(weights.resolve())
            self.policy_version = weights.version
            if self._pending is not None:  # recompute the current output with the new policy
                self.stepper.state = self.agent.unpack_state(self._packed_tensors())
                self._pending = None

    def _packed_tensors(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(value.copy()) for name, value in self._packed_before_pending.items()}

    def _act(self):
        if self._pending is None:
            self._pending = self.stepper.policy()
        return self._pending

    @torch.inference_mode()
    def unroll(self, weights: PublishedWeights | None = None) -> bytes:
        """Run T steps and return the encoded rollout."""
        if weights is not None:
            self.set_weights(weights)
        T, B, stepper = self.unroll_length, self.num_envs, self.stepper
        observations = np.empty((T + 1, *stepper.observation.shape), stepper.observation.dtype)
        firsts = np.empty((T + 1, B), bool)
        actions = np.empty((T, B), np.int64)
        rewards = np.empty((T, B), np.float32)
        logits, decisions, telemetry = [], [], []
        # The snapshot from before the cached step is the current state: the worker either
        # still holds that step or restored the state from the snapshot in set_weights.
        if self._packed_before_pending is None:
            initial_state = _to_numpy(self.agent.pack_state(stepper.state))
        else:
            initial_state = self._packed_before_pending
        initial_prev_action = stepper.prev_action.copy()
        initial_prev_reward = stepper.prev_reward.copy()
        finished_returns: list[float] = []
        finished_lengths: list[int] = []

        for t in range(T + 1):
            if t == T:
                self._packed_before_pending = _to_numpy(self.agent.pack_state(stepper.state))
            output, next_state = self._act()
            observations[t] = stepper.observation
            firsts[t] = stepper.first
            logits.append(output.logits)
            decisions.append(output.decisions)
            telemetry.append(output.telemetry)
            if t == T:
                break
            if not bool(torch.isfinite(output.logits).all()):
                raise NonFiniteLogitsError(
                    f"actor {self.actor_id}: the policy gave non-finite logits at step {t} with weights of version "
                    f"{self.policy_version}; the published weights have diverged"
                )
            action = torch.multinomial(torch.softmax(output.logits, dim=-1), 1).squeeze(1).numpy()
            transition = stepper.advance(action, next_state)
            actions[t], rewards[t] = action, transition.rewards
            for _, episode_return, episode_length in transition.finished:
                finished_returns.append(episode_return)
                finished_lengths.append(episode_length)
            self._pending = None

        rollout = wire.Rollout(
            actor_id=self.actor_id,
            policy_version=self.policy_version,
            observations=observations,
            firsts=firsts,
            actions=actions,
            rewards=rewards,
            behaviour_logits=torch.stack(logits).numpy().astype(np.float32),
            initial_prev_action=initial_prev_action,
            initial_prev_reward=initial_prev_reward,
            initial_state=initial_state,
            decisions={name: torch.stack([d[name] for d in decisions]).numpy() for name in decisions[0]},
            episode_returns=np.asarray(finished_returns, np.float64),
            episode_lengths=np.asarray(finished_lengths, np.int64),
            telemetry={name: torch.stack([d[name] for d in telemetry]).numpy() for name in telemetry[0]},
        )
        return wire.encode(rollout)

    def unroll_with_receipt(self, weights: PublishedWeights | None = None) -> tuple[RolloutReceipt, bytes]:
        """:meth:`unroll`, with a receipt for the driver; the driver calls it with two
        return values, so the receipt and the rollout are separate objects in Ray's store."""
        payload = self.unroll(weights)
        return RolloutReceipt(self.actor_id, self.unroll_length * self.num_envs), payload
