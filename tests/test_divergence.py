"""A diverging step is rolled back, counted, and after too many in a row ends the run cleanly."""

import copy
import functools

import pytest
import torch

from actors import wire
from actors.rollout import NonFiniteLogitsError, PublishedWeights, RolloutWorker
from agents.registry import build_agent
from engram.config import LearnerConfig
from envs.registry import make_vector_env
from learners.errors import DivergenceError
from learners.learner import Learner, LearnerSettings
from agent_settings import agent_options


def _setup(**settings):
    env_factory = functools.partial(make_vector_env, "memory_cue", 4, seed=0, options={"delay": 2})
    make_agent = functools.partial(build_agent, (4,), 2, **agent_options(torso_size=16, core_options={"hidden_size": 16}))
    learner = Learner(make_agent(), LearnerSettings.from_config(LearnerConfig(**settings)))
    worker = RolloutWorker(0, env_factory, make_agent, 9, seed=5)
    rollout = wire.decode(worker.unroll(PublishedWeights(0, [learner.get_weights()])))
    return learner, worker, rollout


def _snapshot(learner):
    return learner.get_weights(), copy.deepcopy(learner.optimizer.state_dict())


def _assert_unchanged(learner, snapshot):
    weights, optimizer = snapshot
    assert all(torch.equal(weights[k], v) for k, v in learner.get_weights().items())
    after = learner.optimizer.state_dict()
    assert optimizer["state"].keys() == after["state"].keys()
    for key, state in optimizer["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(after["state"][key][name])), (key, name)


@pytest.mark.parametrize("learning_rate", [1e30, float("inf")], ids=["huge", "infinite"])
def test_a_diverging_step_is_rolled_back_with_its_optimiser_state(learning_rate):
    learner, _, rollout = _setup(learning_rate=learning_rate)
    before = _snapshot(learner)
    metrics = learner.update([rollout], learner_version=0)
    assert learner.updates == 0 and metrics["learner/skipped_updates"] == 1
    _assert_unchanged(learner, before)


def test_a_normal_step_is_kept():
    learner, _, rollout = _setup()
    before = learner.get_weights()
    learner.update([rollout], learner_version=0)
    assert learner.updates == 1 and learner.skipped_updates == 0
    assert any(not torch.equal(before[k], v) for k, v in learner.get_weights().items())


def test_too_many_rolled_back_steps_in_a_row_stop_with_the_likely_cause():
    learner, _, rollout = _setup(learning_rate=1e30, max_consecutive_skips=3)
    before = _snapshot(learner)
    learner.update([rollout], learner_version=0)
    learner.update([rollout], learner_version=0)
    with pytest.raises(DivergenceError, match="learning_rate"):
        learner.update([rollout], learner_version=0)
    _assert_unchanged(learner, before)


def test_a_good_step_resets_the_count_of_skips_in_a_row():
    learner, _, rollout = _setup(max_consecutive_skips=2)
    learner.settings.learning_rate = 1e30  # the learner takes its step size from the settings
    learner.update([rollout], learner_version=0)
    learner.settings.learning_rate = 6e-4
    learner.update([rollout], learner_version=0)
    assert learner.consecutive_skips == 0 and learner.updates == 1


def test_an_actor_with_broken_weights_says_so():
    learner, worker, _ = _setup()
    broken = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in learner.get_weights().items()}
    with pytest.raises(NonFiniteLogitsError, match="non-finite logits"):
        worker.unroll(PublishedWeights(1, [broken]))
