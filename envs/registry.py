"""Build a vectorised environment by kind, so actors never need to know which one runs.

Every env built here is a ``gymnasium.vector.VectorEnv`` with SAME_STEP autoreset: the
step that ends an episode already returns the next episode's first observation.
"""

from __future__ import annotations

from typing import Any

ENV_KINDS = ("atari", "memory_cue", "maze", "popgym", "bsuite_memory")


def make_vector_env(kind: str, num_envs: int, *, seed: int, options: dict[str, Any] | None = None):
    """Create ``num_envs`` copies of an environment of ``kind``, not yet reset.

    ``options`` are the kind's own settings (e.g. ``game`` and the Atari protocol
    fields for ``atari``; ``delay`` for ``memory_cue``).
    """
    options = dict(options or {})
    if kind == "atari":
        from envs.atari import AtariSettings, make_atari_vector_env

        game = options.pop("game")
        num_threads = options.pop("num_threads", 0)
        return make_atari_vector_env(game, num_envs, settings=AtariSettings(**options), num_threads=num_threads)
    if kind == "memory_cue":
        from envs.memory_cue import MemoryCueVectorEnv

        return MemoryCueVectorEnv(num_envs, seed=seed, **options)
    if kind == "maze":
        from envs.maze import MazeVectorEnv

        return MazeVectorEnv(num_envs, seed=seed, **options)
    if kind == "popgym":
        from envs.popgym_suite import make_popgym_vector_env

        return make_popgym_vector_env(options.pop("id"), num_envs, **options)
    if kind == "bsuite_memory":
        from envs.bsuite_memory import make_bsuite_memory_vector_env

        return make_bsuite_memory_vector_env(options.pop("memory_length"), num_envs, **options)
    raise ValueError(f"unknown env kind {kind!r}; expected one of {', '.join(ENV_KINDS)}")


def action_names(kind: str, num_actions: int, options: dict[str, Any] | None = None) -> list[str]:
    """What each of an env's ``num_actions`` actions does, for pictures and logs (``action <i>``
    where the kind does not name them)."""
    options = options or {}
    names: list[str] = []
    if kind == "atari":
        from envs.atari import atari_action_names

        names = atari_action_names(options["game"], full_action_space=options.get("full_action_space", True))
    elif kind == "maze":
        from envs.maze import MOVE_NAMES

        names = list(MOVE_NAMES)
    elif kind == "memory_cue":
        names = [f"cue {i}" for i in range(num_actions)]
    if len(names) != num_actions:
        names = [f"action {i}" for i in range(num_actions)]
    return names
