"""bsuite's ``memory_len`` / ``memory_size`` task (Osband et al. 2020) as a gymnasium env.

The environment is bsuite's own ``MemoryChain`` (a ``dm_env``): the first observation shows
``num_bits`` context bits (as ±1), the last one shows which bit is asked for, and the final
action, ``memory_length`` steps later, earns +1 if it names that bit's value and −1 if not;
every other step earns 0. Each observation also carries the share of the episode left.
This module only translates ``dm_env`` time steps into gymnasium's ``step`` / ``reset``:
an episode is ``memory_length + 1`` actions, and ends with ``terminated`` (never
``truncated``). Note bsuite's own convention that the first step returns the first
observation again (its step reports the observation it acted on).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv


class BsuiteMemoryEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, memory_length: int, num_bits: int = 1):
        from bsuite.environments.memory_chain import MemoryChain

        if memory_length < 1 or num_bits < 1:
            raise ValueError(f"memory_length and num_bits must be at least 1, got {memory_length} and {num_bits}")
        self.memory_length = memory_length
        self.num_bits = num_bits
        self._make = lambda seed: MemoryChain(memory_length=memory_length, num_bits=num_bits, seed=seed)
        self._env = self._make(None)
        self.observation_space = spaces.Box(-1.0, 1.0, (num_bits + 2,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self._env = self._make(seed)
        step = self._env.reset()
        return step.observation.reshape(-1).astype(np.float32), {}

    def step(self, action):
        step = self._env.step(int(action))
        observation = step.observation.reshape(-1).astype(np.float32)
        return observation, float(step.reward), bool(step.last()), False, {}


def make_bsuite_memory_vector_env(memory_length: int, num_envs: int, *, num_bits: int = 1) -> SyncVectorEnv:
    """``num_envs`` copies stepped together, autoreset ``SAME_STEP``."""
    return SyncVectorEnv(
        [lambda: BsuiteMemoryEnv(memory_length, num_bits) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
