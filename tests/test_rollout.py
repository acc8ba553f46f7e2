"""Actor and learner agree: with the same weights, the learner's recomputed policy equals
the behaviour policy at every step, across episode ends and consecutive rollouts."""

import functools

import numpy as np
import torch

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from agents.registry import build_agent
from engram.config import LearnerConfig
from envs.registry import make_vector_env
from learners.batch import stack_rollouts
from learners.bptt.unroll import PlainUnroll
from learners.learner import Learner, LearnerSettings, make_step_fn, step_inputs
from agent_settings import agent_options


def _worker(T=9, num_envs=4, delay=2):
    env_factory = functools.partial(make_vector_env, "memory_cue", num_envs, seed=0, options={"delay": delay})
    agent_factory = functools.partial(build_agent, (4,), 2, **agent_options(torso_size=16, core_options={"hidden_size": 16}))
    return RolloutWorker(0, env_factory, agent_factory, T, seed=5), agent_factory


def test_rollout_layout_and_episode_statistics():
    worker, _ = _worker(T=9, delay=2)  # episodes last 4 steps
    rollout = wire.decode(worker.unroll())
    assert rollout.observations.shape == (10, 4, 4)
    assert rollout.firsts[0].all()  # the very first observation starts episodes
    assert rollout.firsts[4].all() and rollout.firsts[8].all() and not rollout.firsts[1:4].any()
    assert len(rollout.episode_returns) == 8 and np.all(rollout.episode_lengths == 4)
    assert set(np.abs(rollout.episode_returns)) == {1.0}
    # the next rollout continues where this one stopped
    following = wire.decode(worker.unroll())
    assert np.array_equal(following.observations[0], rollout.observations[-1])
    assert np.array_equal(following.behaviour_logits[0], rollout.behaviour_logits[-1])
    assert np.array_equal(following.initial_prev_action, rollout.actions[-1])


def test_learner_recomputes_the_behaviour_logits():
    worker, agent_factory = _worker()
    agent = agent_factory()
    worker.set_weights(PublishedWeights(0, [agent.state_dict()]))
    rollouts = [wire.decode(worker.unroll()) for _ in range(3)]
    for rollout in rollouts:
        batch = stack_rollouts([rollout], agent)
        with torch.no_grad():
            outputs, _ = PlainUnroll()(make_step_fn(agent), batch.initial_state, step_inputs(batch))
        torch.testing.assert_close(outputs["logits"], batch.behaviour_logits, rtol=0, atol=1e-6)


def test_non_finite_loss_skips_the_update_and_keeps_the_weights():
    worker, agent_factory = _worker()
    learner = Learner(agent_factory(), LearnerSettings.from_config(LearnerConfig(reward_clip=None)))
    rollout = wire.decode(worker.unroll(PublishedWeights(0, [learner.get_weights()])))
    rollout.rewards = rollout.rewards.copy()
    rollout.rewards[3, 1] = np.nan
    before = learner.get_weights()
    metrics = learner.update([rollout], learner_version=0)
    assert metrics["learner/skipped_updates"] == 1 and learner.updates == 0
    assert all(torch.equal(before[k], v) for k, v in learner.get_weights().items())
    rollout.rewards[3, 1] = 0.0
    learner.update([rollout], learner_version=0)
    assert learner.updates == 1
    assert any(not torch.equal(before[k], v) for k, v in learner.get_weights().items())


def _memory_worker(core, T=7):
    env_factory = functools.partial(make_vector_env, "memory_cue", 3, seed=0, options={"delay": 20})
    agent_factory = functools.partial(
        build_agent, (4,), 2, **agent_options(
            torso_size=16, core=core,
            core_options={"hidden_size": 16, "memory_slots": 32, "word_size": 8, "num_heads": 2, "top_k": 4},
        ),
    )
    return RolloutWorker(0, env_factory, agent_factory, T, seed=3), agent_factory


def test_sam_rollouts_replay_exactly_even_across_weight_updates():
    """SAM writes its memory in place: the packed initial state must not see step T's write,
    and a weight update between rollouts must recompute step T from the clean state."""
    worker, agent_factory = _memory_worker("sam")
    versions = [0, 0, 1, 1, 2]  # repeated versions keep the cached step, new ones recompute it
    distinct = [agent_factory() for _ in range(3)]
    agents = [distinct[v] for v in versions]
    rollouts = []
    for version, agent in zip(versions, agents):
        rollouts.append(wire.decode(worker.unroll(PublishedWeights(version, [agent.state_dict()]))))
    for rollout, agent in zip(rollouts, agents):
        batch = stack_rollouts([rollout], agent)
        with torch.no_grad():
            outputs, _ = PlainUnroll()(make_step_fn(agent), batch.initial_state, step_inputs(batch))
        torch.testing.assert_close(outputs["logits"], batch.behaviour_logits, rtol=0, atol=1e-5)
    # rollouts of different lengths of touched rows still stack into one batch
    batch = stack_rollouts(rollouts[:2], agents[0])
    assert batch.initial_state["memory"].shape[0] == 6
