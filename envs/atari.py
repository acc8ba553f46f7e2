"""Atari 2600 games through ale-py's C++ vector environment.

Defaults follow the evaluation protocol of Machado et al. 2018 ("Revisiting the Arcade
Learning Environment"): sticky actions with p = 0.25, the full 18-action set, no
episode end on life loss, no no-op starts, a cap of 108,000 frames per episode,
frameskip 4, 84×84 greyscale with a max-pool over the last two frames.

The preprocessing runs in ale-py's C++ threads (``AtariVectorEnv``). Rewards are the raw
game score: the learner clips them for training, while reported episode returns stay the
real score. Autoreset is ``SAME_STEP``: when an episode ends, the observation returned by
that step is already the first observation of the next episode, so no dummy transition
enters a rollout.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from gymnasium.vector import AutoresetMode


class UnknownGameError(ValueError):
    """Raised for a game name that is not one of ale-py's ROM ids."""


@dataclass(frozen=True)
class AtariSettings:
    """Protocol settings; the defaults are Machado et al. 2018's."""

    sticky_action_probability: float = 0.25
    full_action_space: bool = True
    frameskip: int = 4
    frame_stack: int = 4
    image_size: int = 84
    max_episode_frames: int = 108_000
    noop_max: int = 0
    episodic_life: bool = False
    fire_reset: bool = False


def all_game_ids() -> list[str]:
    from ale_py import roms

    return sorted(roms.get_all_rom_ids())


def check_game(game: str) -> str:
    """Return ``game`` if it is a ROM id, else raise with the closest ids."""
    games = all_game_ids()
    if game in games:
        return game
    closest = difflib.get_close_matches(game.lower().replace("-", "_"), games, n=3, cutoff=0.5)
    hint = f" Closest ROM ids: {', '.join(closest)}." if closest else ""
    raise UnknownGameError(f"unknown Atari game {game!r}.{hint} (ale-py ships {len(games)} ROMs)")


def atari_action_names(game: str, *, full_action_space: bool = True) -> list[str]:
    """ALE's names of the game's actions in the env's order: all 18 (Machado et al.'s full
    action space), or the ROM's minimal set."""
    import ale_py

    if full_action_space:
        return [ale_py.Action(i).name for i in range(len(ale_py.Action.__members__))]
    from ale_py import roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(str(roms.get_rom_path(check_game(game))))
    return [action.name for action in ale.getMinimalActionSet()]


def make_atari_vector_env(
    game: str,
    num_envs: int,
    *,
    settings: AtariSettings = AtariSettings(),
    num_threads: int = 0,
):
    """Build an ``AtariVectorEnv`` with SAME_STEP autoreset and raw rewards.

    Observations are ``uint8`` ``[num_envs, frame_stack, 84, 84]``.
    """
    from ale_py.vector_env import AtariVectorEnv

    check_game(game)
    return AtariVectorEnv(
        game,
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=settings.max_episode_frames,
        repeat_action_probability=settings.sticky_action_probability,
        full_action_space=settings.full_action_space,
        autoreset_mode=AutoresetMode.SAME_STEP,
        img_height=settings.image_size,
        img_width=settings.image_size,
        grayscale=True,
        stack_num=settings.frame_stack,
        frameskip=settings.frameskip,
        maxpool=True,
        noop_max=settings.noop_max,
        episodic_life=settings.episodic_life,
        reward_clipping=False,
        use_fire_reset=settings.fire_reset,
    )
