"""MemoryCue: a cheap vectorised task that cannot be solved without memory.

Each episode shows one of ``num_cues`` cues (a one-hot vector) on its first step, then
``delay`` blank steps, then a query step. On the query step the agent must name the cue
with its action: reward +1 if right, −1 if wrong; every other step gives 0 whatever the
action. A memoryless policy scores 0 on average; a perfect recurrent one scores 1.

Observation (float32, ``num_cues + 2``): ``[cue one-hot, is_query, bias]``.
Episodes last ``delay + 2`` steps. Autoreset is SAME_STEP, like the Atari envs.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv


class MemoryCueVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, *, delay: int = 5, num_cues: int = 2, seed: int | None = None):
        if delay < 0 or num_cues < 2:
            raise ValueError(f"MemoryCue needs delay >= 0 and num_cues >= 2, got {delay}, {num_cues}")
        self.num_envs = num_envs
        self.delay = delay
        self.num_cues = num_cues
        self.episode_length = delay + 2
        self.single_observation_space = spaces.Box(0.0, 1.0, (num_cues + 2,), np.float32)
        self.single_action_space = spaces.Discrete(num_cues)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, num_envs)
        self._rng = np.random.default_rng(seed)
        self._cue = np.zeros(num_envs, np.int64)
        self._time = np.zeros(num_envs, np.int64)

    def _observe(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.num_cues + 2), np.float32)
        at_start = self._time == 0
        obs[at_start, self._cue[at_start]] = 1.0
        obs[:, self.num_cues] = (self._time == self.episode_length - 1).astype(np.float32)
        obs[:, self.num_cues + 1] = 1.0
        return obs

    def _new_episodes(self, mask: np.ndarray) -> None:
        self._cue[mask] = self._rng.integers(0, self.num_cues, int(mask.sum()))
        self._time[mask] = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._new_episodes(np.ones(self.num_envs, bool))
        return self._observe(), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        is_query = self._time == self.episode_length - 1
        rewards = np.where(is_query, np.where(actions == self._cue, 1.0, -1.0), 0.0)
        terminated = is_query.copy()
        self._time += 1
        self._new_episodes(terminated)
        truncated = np.zeros(self.num_envs, bool)
        return self._observe(), rewards.astype(np.float32), terminated, truncated, {}


class MemoryCueEnv(gymnasium.Env):
    """Single-environment view of :class:`MemoryCueVectorEnv` (for gymnasium's checker)."""

    metadata = {"render_modes": []}

    def __init__(self, delay: int = 5, num_cues: int = 2):
        self._vector = MemoryCueVectorEnv(1, delay=delay, num_cues=num_cues)
        self.observation_space = self._vector.single_observation_space
        self.action_space = self._vector.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, _ = self._vector.reset(seed=seed if seed is not None else int(self.np_random.integers(2**31)))
        return obs[0], {}

    def step(self, action):
        was_query = self._vector._time[0] == self._vector.episode_length - 1
        obs, rewards, terminated, truncated, _ = self._vector.step(np.array([action]))
        if was_query:
            # The vector env has already started the next episode; a single env stops here.
            obs = np.zeros_like(obs)
        return obs[0], float(rewards[0]), bool(terminated[0]), bool(truncated[0]), {}
