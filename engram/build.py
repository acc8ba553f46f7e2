"""Compose envs, agents and learners from a validated `Config` (no algorithm logic here)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from agents.registry import build_agent
from engram.config import Config
from envs.registry import make_vector_env
from learners.bptt.unroll import BudgetedUnroll, PlainUnroll
from learners.driver import DriverSettings
from learners.endpoint import LearnerEndpoint
from learners.intrinsic import IntrinsicRewards
from learners.learner import Learner, LearnerSettings
from learners.rollout_check import RolloutSpec


@dataclass(frozen=True)
class EnvSpec:
    observation_shape: tuple[int, ...]
    num_actions: int
    observation_dtype: str = "uint8"


def env_factory(config: Config, seed: int, num_envs: int | None = None):
    """A picklable zero-argument builder of the configured vector env."""
    return functools.partial(
        make_vector_env,
        config.env.kind,
        num_envs or config.resources.envs_per_actor,
        seed=seed,
        options=config.env.factory_options(),
    )


def probe_env(config: Config) -> EnvSpec:
    """Build one env briefly to read the observation shape and action count."""
    env = env_factory(config, seed=config.run.seed, num_envs=1)()
    try:
        space = env.single_observation_space
        return EnvSpec(tuple(space.shape), int(env.single_action_space.n), np.dtype(space.dtype).name)
    finally:
        env.close()


def agent_factory(config: Config, spec: EnvSpec):
    """A picklable zero-argument builder of the configured agent."""
    return functools.partial(
        build_agent,
        spec.observation_shape,
        spec.num_actions,
        torso=config.agent.torso,
        torso_size=config.agent.torso_size,
        core=config.agent.core,
        core_options=config.agent.core_options(),
        reward_clip=config.learner.reward_clip or float("inf"),
        init=config.agent.init,
        center_frames=config.agent.center_frames,
        feature_norm=config.agent.feature_norm,
    )


def learner_settings(config: Config) -> LearnerSettings:
    return LearnerSettings.from_config(
        config.learner, aux_loss_costs=config.agent.aux_loss_costs(), mixed_monte_carlo=config.exploration.mixed_monte_carlo,
        total_steps=config.run.total_steps,
    )


def learner(config: Config, agent, replicas=None) -> Learner:
    """The learner (in this process), with the configured BPTT mode and exploration bonus;
    ``replicas`` (a :class:`learners.data_parallel.ReplicaSum`) makes it one of N data-parallel replicas."""
    bptt, exploration = config.learner.bptt, config.exploration
    unroll = PlainUnroll()
    if bptt.mode != "full":
        unroll = BudgetedUnroll(
            bptt.mode, bptt.budget_bytes, agent.parameters(), measure_every=bptt.measure_every,
            open_journal=agent.open_journal, plan_units=bptt.plan_units,
        )
    intrinsic = None
    if exploration.kind == "pixelcnn":
        intrinsic = IntrinsicRewards(
            exploration.pseudo_count_config(), frame_fraction=exploration.frame_fraction,
            subsample=exploration.subsample, seed=config.run.seed,
        )
    return Learner(
        agent, learner_settings(config), unroll=unroll, intrinsic_rewards=intrinsic,
        device=config.resources.learner_device, replicas=replicas,
    )


def endpoint(config: Config, make_agent, spec: EnvSpec, replicas=None) -> LearnerEndpoint:
    """The learner with its side of the data path: it fetches, checks and batches rollouts
    (a data-parallel replica batches its share: rollouts_per_update / num_learners)."""
    share = config.rollouts_per_update // config.resources.num_learners
    return LearnerEndpoint(learner(config, make_agent(), replicas), rollout_spec(config, spec, make_agent), share)


def placed_learner(config: Config, make_agent, spec: EnvSpec):
    """The learner's endpoint where ``resources`` puts it: in this process, or in a Ray actor
    (``resources.learner_placement``; a GPU learner defaults to an actor)."""
    resources = config.resources
    if not resources.learner_is_actor:
        return endpoint(config, make_agent, spec)
    from learners.remote_learner import RemoteLearner

    return RemoteLearner(
        functools.partial(endpoint, config, make_agent, spec),
        num_learners=resources.num_learners,
        device=resources.learner_device,
        num_gpus=resources.learner_gpus,
        num_cpus=resources.learner_cpus,
        torch_threads=resources.learner_torch_threads,
    )


def driver_settings(config: Config, *, total_steps: int | None = None, seed: int | None = None) -> DriverSettings:
    resources = config.resources
    return DriverSettings(
        num_actors=resources.num_actors,
        rollouts_per_update=config.rollouts_per_update,
        total_steps=config.run.total_steps if total_steps is None else total_steps,
        unroll_length=config.learner.unroll_length,
        actor_num_cpus=resources.cpus_per_actor,
        actor_torch_threads=resources.actor_torch_threads,
        max_actor_restarts=resources.max_actor_restarts,
        seed=config.run.seed if seed is None else seed,
    )


def rollout_spec(config: Config, spec: EnvSpec, make_agent) -> RolloutSpec:
    """What the learner accepts from an actor, read off a fresh agent."""
    return RolloutSpec.from_agent(make_agent(), spec.observation_shape, spec.observation_dtype, config.learner.unroll_length)
