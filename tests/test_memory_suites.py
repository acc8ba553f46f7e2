"""POPGym and bsuite's memory_len through their own packages, adapted to engram's env contract."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from engram.config import ConfigError, load_config
from envs.bsuite_memory import BsuiteMemoryEnv, make_bsuite_memory_vector_env
from envs.popgym_suite import (
    UnknownPopgymEnvError,
    check_popgym_id,
    make_popgym_env,
    make_popgym_vector_env,
    popgym_classes,
)
from envs.registry import make_vector_env

# one of each space shape: Discrete obs, MultiDiscrete action, Box obs + Box action, a game
POPGYM_SAMPLES = ["RepeatPreviousEasy", "MineSweeperEasy", "PositionOnlyPendulumEasy", "BattleshipEasy",
                  "AutoencodeMedium", "CountRecallHard", "PositionOnlyCartPoleEasy"]


def test_every_popgym_environment_is_reachable_by_name_and_by_id():
    classes = popgym_classes()
    assert len(classes) >= 40 and "RepeatPreviousHard" in classes
    assert check_popgym_id("popgym-AutoencodeMedium-v0") == "AutoencodeMedium"
    with pytest.raises(UnknownPopgymEnvError, match="RepeatPreviousEasy"):
        check_popgym_id("RepeatPrevEasy")


@pytest.mark.filterwarnings("ignore:.*is different from the unwrapped version")
@pytest.mark.parametrize("env_id", POPGYM_SAMPLES)
def test_adapted_popgym_envs_pass_gymnasiums_checker(env_id):
    env = make_popgym_env(env_id)
    check_env(env, skip_render_check=True)
    assert env.observation_space.dtype == np.float32 and len(env.observation_space.shape) == 1
    assert env.action_space.n >= 2


def test_a_discrete_observation_is_one_hot():
    env = make_popgym_env("RepeatPreviousEasy")
    observation, _ = env.reset(seed=3)
    assert observation.shape == (4,) and observation.sum() == 1.0 and set(observation) == {0.0, 1.0}


def test_a_continuous_action_takes_evenly_spaced_values():
    env = make_popgym_env("PositionOnlyPendulumEasy", action_bins=5)
    assert env.action_space.n == 5
    assert env.get_wrapper_attr("values").tolist() == pytest.approx([-2.0, -1.0, 0.0, 1.0, 2.0])


def test_popgym_vector_env_autoresets_on_the_same_step():
    env = make_popgym_vector_env("RepeatFirstEasy", 3)
    env.reset(seed=0)
    length = make_popgym_env("RepeatFirstEasy").unwrapped.max_episode_length
    ended = []
    for t in range(length + 2):
        _, _, terminated, truncated, info = env.step(np.zeros(3, np.int64))
        if np.any(terminated | truncated):
            ended.append(t)
            assert "final_obs" in info  # SAME_STEP: the returned observation starts the next episode
    assert ended and ended[0] + 1 == length


def test_bsuite_memory_env_passes_the_checker_and_rewards_remembering():
    check_env(BsuiteMemoryEnv(memory_length=5), skip_render_check=True)
    env = BsuiteMemoryEnv(memory_length=5)
    for seed in range(6):
        observation, _ = env.reset(seed=seed)
        remembered = int(observation[2] > 0)  # the context bit, shown as ±1 on the first step only
        steps, terminated = 0, False
        while not terminated:
            observation, reward, terminated, truncated, _ = env.step(remembered)
            steps += 1
            assert not truncated
        assert steps == 6 and reward == 1.0
        env.reset(seed=seed)
        for _ in range(5):
            env.step(0)
        assert env.step(1 - remembered)[1] == -1.0


def test_bsuite_memory_vector_env_and_the_config_path():
    config = load_config("configs/smoke.yaml", ["env.kind=bsuite_memory", "env.bsuite_memory.memory_length=3"])
    env = make_vector_env(config.env.kind, 4, seed=0, options=config.env.factory_options())
    observations, _ = env.reset(seed=0)
    assert observations.shape == (4, 3) and observations.dtype == np.float32
    episode_ends = 0
    for _ in range(8):
        _, _, terminated, _, _ = env.step(np.zeros(4, np.int64))
        episode_ends += int(terminated.sum())
    assert episode_ends == 8  # two episodes of 4 actions in each of 4 envs
    assert isinstance(make_bsuite_memory_vector_env(3, 2).single_observation_space.shape, tuple)


def test_popgym_config_names_an_unknown_id():
    with pytest.raises(ConfigError, match=r"env.popgym.id.*unknown POPGym environment 'RepeatPrevious'"):
        load_config("configs/smoke.yaml", ["env.kind=popgym", "env.popgym.id=RepeatPrevious"])


@pytest.mark.e2e
@pytest.mark.parametrize("config", ["configs/popgym_lstm.yaml", "configs/bsuite_memory_lstm.yaml"])
def test_the_suites_train_through_the_actors_and_the_learner(ray_session, tmp_path, config):
    from engram.checkpoint import Checkpointer
    from engram.train import train

    run = load_config(config, ["run.total_steps=4096", "telemetry.console=false", "resources.envs_per_actor=16",
                               "learner.batch_size=16"])
    run_dir = train(run, str(tmp_path / "run"))
    payload, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    assert payload["progress"]["env_steps"] >= 4096 and payload["progress"]["episodes"] > 0
    assert payload["progress"]["rejected_rollouts"] == 0


SMALL_CORES = [  # every core, sized so that one update takes well under a second
    "agent.lstm.hidden_size=32", "agent.memory.hidden_size=32", "agent.memory.memory_slots=64",
    "agent.memory.word_size=8", "agent.memory.num_heads=2", "agent.straw.hidden_size=32",
    "agent.straw.latent_size=8", "resources.envs_per_actor=4", "learner.batch_size=4",
]


@pytest.mark.parametrize("core", ["lstm", "sam", "sdnc", "dam", "ntm", "straw", "strawe"])
@pytest.mark.parametrize("config_path, extra", [
    ("configs/popgym_lstm.yaml", ["env.popgym.id=RepeatPreviousEasy", "learner.unroll_length=16"]),
    # an unroll over the whole episode, backpropagated through a checkpointed plan
    ("configs/bsuite_memory_lstm.yaml", ["env.bsuite_memory.memory_length=24", "learner.unroll_length=25",
                                         "learner.bptt.mode=msm", "learner.bptt.memory_budget=1MiB"]),
], ids=["popgym", "memory_len_msm"])
def test_every_core_takes_learner_updates_on_the_suites(core, config_path, extra):
    import torch

    from actors import wire
    from actors.rollout import PublishedWeights, RolloutWorker
    from engram import build

    config = load_config(config_path, [f"agent.core={core}", *SMALL_CORES, *extra])
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    learner = build.learner(config, make_agent())
    worker = RolloutWorker(0, build.env_factory(config, seed=0), make_agent, config.learner.unroll_length, seed=0)
    before = learner.get_weights()
    for version in range(2):
        rollout = wire.decode(worker.unroll(PublishedWeights(version, [learner.get_weights()])))
        metrics = learner.update([rollout], learner_version=version)
        assert np.isfinite(metrics["loss/total"])
    if config.learner.bptt.mode != "full":  # the update ran a checkpointed plan within the budget
        assert 0 < metrics["bptt/planned_bytes"] <= metrics["bptt/budget_bytes"] == 2**20
    assert learner.updates == 2 and learner.skipped_updates == 0
    after = learner.get_weights()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)
