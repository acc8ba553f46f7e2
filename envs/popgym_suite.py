"""POPGym's partially observable environments (Morad et al. 2023) as one vector env.

The environments are POPGym's own (the ``popgym`` package); this module only adapts their
spaces to what every engram agent reads and writes, and steps many copies together:

* observations become one flat ``float32`` vector: a ``Discrete(n)`` value is one-hot, a
  ``MultiDiscrete`` one is a concatenation of one-hots, a ``Box`` is flattened as it is
  (nested spaces go through POPGym's ``Flatten`` wrapper first);
* actions become one ``Discrete``: a ``MultiDiscrete`` action is ravelled by POPGym's
  ``DiscreteAction`` wrapper, and a 1-D ``Box`` action (the Pendulum variants) takes one of
  ``action_bins`` evenly spaced values between its bounds;
* ``SAME_STEP`` autoreset through gymnasium's ``SyncVectorEnv``, as for our other envs:
  the step that ends an episode already returns the next episode's first observation.
"""

from __future__ import annotations

import difflib

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv


class UnknownPopgymEnvError(ValueError):
    """An id that is not one of POPGym's environments."""


def popgym_classes() -> dict[str, type]:
    """POPGym's environments by class name, e.g. ``RepeatPreviousMedium``."""
    from popgym import envs

    return {env_class.__name__: env_class for env_class in envs.ALL}


def check_popgym_id(env_id: str) -> str:
    """The class name for ``env_id`` (a class name, or an id like ``popgym-RepeatFirstEasy-v0``)."""
    classes = popgym_classes()
    name = env_id.removeprefix("popgym-").removesuffix("-v0")
    if name in classes:
        return name
    close = difflib.get_close_matches(name, sorted(classes), n=3, cutoff=0.5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise UnknownPopgymEnvError(f"unknown POPGym environment {env_id!r}.{hint} (POPGym has {len(classes)})")


def _flat_size(space: spaces.Space) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    raise TypeError(f"observation space {space} is not Discrete, MultiDiscrete, MultiBinary or Box")


class FloatObservations(gym.ObservationWrapper):
    """Any flat POPGym observation as a ``float32`` vector (one-hot for discrete parts)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.source = env.observation_space
        size = _flat_size(self.source)
        low = -np.inf if isinstance(self.source, spaces.Box) else 0.0
        high = np.inf if isinstance(self.source, spaces.Box) else 1.0
        self.observation_space = spaces.Box(low, high, (size,), np.float32)

    def observation(self, observation) -> np.ndarray:
        source = self.source
        if isinstance(source, spaces.Discrete):
            vector = np.zeros(source.n, np.float32)
            vector[int(observation) - int(source.start)] = 1.0
            return vector
        if isinstance(source, spaces.MultiDiscrete):
            vector = np.zeros(int(np.sum(source.nvec)), np.float32)
            offsets = np.concatenate([[0], np.cumsum(source.nvec)[:-1]])
            vector[offsets + np.asarray(observation, np.int64).ravel() - np.asarray(source.start).ravel()] = 1.0
            return vector
        return np.asarray(observation, np.float32).ravel()


class DiscretizedActions(gym.ActionWrapper):
    """A 1-D ``Box`` action space as ``Discrete(bins)``: action i is the i-th of ``bins``
    evenly spaced values from the low bound to the high one."""

    def __init__(self, env: gym.Env, bins: int):
        super().__init__(env)
        box = env.action_space
        if not (isinstance(box, spaces.Box) and box.shape == (1,)):
            raise TypeError(f"only a one-dimensional Box action space can be discretised, not {box}")
        self.values = np.linspace(box.low[0], box.high[0], bins, dtype=box.dtype)
        self.action_space = spaces.Discrete(bins)

    def action(self, action) -> np.ndarray:
        return self.values[int(action)][None]


def make_popgym_env(env_id: str, *, action_bins: int = 5) -> gym.Env:
    """One POPGym environment with a flat float observation and a discrete action."""
    from popgym.wrappers import DiscreteAction, Flatten

    env = popgym_classes()[check_popgym_id(env_id)]()
    if isinstance(env.observation_space, (spaces.Tuple, spaces.Dict)) or isinstance(
        env.action_space, (spaces.Tuple, spaces.Dict)
    ):
        env = Flatten(env)
    if isinstance(env.action_space, spaces.MultiDiscrete):
        env = DiscreteAction(env)
    elif isinstance(env.action_space, spaces.Box):
        env = DiscretizedActions(env, action_bins)
    return FloatObservations(env)


def make_popgym_vector_env(env_id: str, num_envs: int, *, action_bins: int = 5) -> SyncVectorEnv:
    """``num_envs`` copies of a POPGym environment, stepped together, autoreset ``SAME_STEP``."""
    check_popgym_id(env_id)
    return SyncVectorEnv(
        [lambda: make_popgym_env(env_id, action_bins=action_bins) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
