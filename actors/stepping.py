"""The agent–environment loop, once: :class:`EnvStepper` steps a vector env with an agent.

Both the rollout actor (:class:`actors.rollout.RolloutWorker`) and ``engram eval`` drive it.
It holds what carries from one step to the next: the observation, ``first`` (True where the
observation begins an episode; the agent resets the core state and zeroes the previous action
and reward there), the previous action and reward, the core state, and each env's running
raw return and length.

Every engram env autoresets ``SAME_STEP``: the step whose ``terminated | truncated`` is set
already returns the first observation of the next episode, so that observation is marked
``first`` and no dummy transition is ever stepped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Transition:
    """What one vector-env step gave back."""

    rewards: np.ndarray  # [B] float32, the raw env rewards
    done: np.ndarray  # [B] bool: terminated or truncated (the next observation is a first one)
    info: dict[str, Any]
    finished: list[tuple[int, float, int]] = field(default_factory=list)  # (env, raw return, length) of ended episodes


class EnvStepper:
    """Args:
        env: a gymnasium vector env (not yet reset) with ``SAME_STEP`` autoreset.
        agent: an ``Agent``; its weights are the caller's business.
        seed: the env's reset seed.
    """

    def __init__(self, env, agent, seed: int):
        self.env = env
        self.agent = agent
        observation, _ = env.reset(seed=seed)
        self.num_envs = len(observation)
        self.observation = observation
        self.first = np.ones(self.num_envs, bool)
        self.prev_action = np.zeros(self.num_envs, np.int64)
        self.prev_reward = np.zeros(self.num_envs, np.float32)
        self.state = agent.initial_state(self.num_envs)
        self.episode_return = np.zeros(self.num_envs, np.float64)
        self.episode_length = np.zeros(self.num_envs, np.int64)

    def policy(self):
        """The agent's ``(AgentOutput, next_state)`` for the current observation (nothing advances)."""
        return self.agent.step(
            torch.from_numpy(self.observation),
            torch.from_numpy(self.prev_action),
            torch.from_numpy(self.prev_reward),
            torch.from_numpy(self.first),
            self.state,
        )

    def advance(self, actions: np.ndarray, next_state) -> Transition:
        """Step the envs with ``actions`` ``[B]`` and carry ``next_state`` (from :meth:`policy`) on."""
        observation, rewards, terminated, truncated, info = self.env.step(actions)
        done = np.logical_or(terminated, truncated)
        rewards = np.asarray(rewards, np.float32)
        self.episode_return += rewards
        self.episode_length += 1
        finished = [(int(i), float(self.episode_return[i]), int(self.episode_length[i])) for i in np.flatnonzero(done)]
        self.episode_return[done] = 0.0
        self.episode_length[done] = 0
        self.observation = observation
        self.first = done
        self.prev_action = np.asarray(actions, np.int64)
        self.prev_reward = rewards
        self.state = next_state
        return Transition(rewards, done, info, finished)

    def close(self) -> None:
        self.env.close()
