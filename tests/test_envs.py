"""Environments: gymnasium's checker, episode boundaries, Atari protocol settings."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from envs.atari import UnknownGameError, check_game, make_atari_vector_env
from envs.memory_cue import MemoryCueEnv, MemoryCueVectorEnv


def test_memory_cue_passes_the_gymnasium_checker():
    check_env(MemoryCueEnv(delay=3), skip_render_check=True)


def test_memory_cue_rewards_only_the_remembered_cue():
    env = MemoryCueVectorEnv(64, delay=3, seed=0)
    obs, _ = env.reset(seed=0)
    cues = obs[:, :2].argmax(1)
    assert np.all(obs[:, :2].sum(1) == 1)
    for _ in range(4):  # the cue is hidden and the query flag is off during the delay
        obs, rewards, terminated, _, _ = env.step(np.zeros(64, np.int64))
        assert np.all(rewards == 0) and not terminated.any()
    assert np.all(obs[:, 2] == 1.0) and np.all(obs[:, :2] == 0)
    actions = np.where(np.arange(64) % 2 == 0, cues, 1 - cues)
    obs, rewards, terminated, _, _ = env.step(actions)
    assert terminated.all()
    assert np.array_equal(rewards, np.where(np.arange(64) % 2 == 0, 1.0, -1.0))
    # SAME_STEP autoreset: the returned observation is already the next episode's cue.
    assert np.all(obs[:, :2].sum(1) == 1) and np.all(obs[:, 2] == 0)


def test_unknown_game_suggests_rom_ids():
    with pytest.raises(UnknownGameError, match="pong"):
        check_game("Pong-v5")
    assert check_game("breakout") == "breakout"


def test_atari_follows_the_machado_protocol():
    env = make_atari_vector_env("pong", 2)
    try:
        assert env.single_observation_space.shape == (4, 84, 84)
        assert env.single_observation_space.dtype == np.uint8
        assert env.single_action_space.n == 18  # full action space
        assert env.autoreset_mode == AutoresetMode.SAME_STEP
        obs, info = env.reset(seed=3)
        assert obs.shape == (2, 4, 84, 84)
        total = np.zeros(2)
        for _ in range(200):
            obs, reward, terminated, truncated, info = env.step(np.random.randint(0, 18, 2))
            total += reward
            assert not terminated.any()
        assert np.all(info["frame_number"] >= 800)  # frameskip 4
    finally:
        env.close()


def test_atari_rewards_are_the_raw_game_score():
    env = make_atari_vector_env("space_invaders", 2)
    try:
        env.reset(seed=0)
        rewards = [env.step(np.random.randint(0, 18, 2))[1] for _ in range(300)]
        assert np.max(rewards) > 1  # an alien is worth 5 to 30 points; clipping would give 1
    finally:
        env.close()
