"""The learner's budgeted unroll: the same update as plain BPTT, within its budget."""

import copy
import functools

import pytest
import torch

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from agents.registry import build_agent
from engram.config import LearnerConfig
from envs.registry import make_vector_env
from learners.bptt.unroll import BudgetedUnroll
from learners.bptt_plan import BudgetTooSmallError
from learners.learner import Learner, LearnerSettings
from agent_settings import agent_options


def _rollouts(core="lstm", T=24):
    env_factory = functools.partial(make_vector_env, "memory_cue", 4, seed=0, options={"delay": 5})
    core_options = {"hidden_size": 16} if core == "lstm" else {"hidden_size": 16, "plan_length": 6, "patch_size": 3}
    agent_factory = functools.partial(build_agent, (4,), 2, **agent_options(torso_size=16, core=core, core_options=core_options))
    worker = RolloutWorker(0, env_factory, agent_factory, T, seed=2)
    agent = agent_factory()
    rollout = wire.decode(worker.unroll(PublishedWeights(0, [agent.state_dict()])))
    return agent, [rollout]


def assert_same_update(plain, budgeted, rollouts):
    """One update each: equal losses, gradient norm and new weights; the budgeted one within
    its budget. Returns the budgeted update's metrics."""
    plain_metrics = plain.update(rollouts, learner_version=0)
    budget_metrics = budgeted.update(rollouts, learner_version=0)
    for name in ("loss/policy", "loss/value", "loss/entropy", "learner/grad_norm"):
        assert budget_metrics[name] == pytest.approx(plain_metrics[name], rel=1e-10, abs=1e-12), name
    for (name, a), b in zip(plain.agent.state_dict().items(), budgeted.agent.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    assert budget_metrics["bptt/measured_peak_bytes"] <= budget_metrics["bptt/budget_bytes"]
    return budget_metrics


@pytest.mark.parametrize("core", ["lstm", "straw"])
@pytest.mark.parametrize("mode", ["hsm", "ism", "msm"])
def test_budgeted_update_equals_plain_bptt(core, mode):
    agent, rollouts = _rollouts(core)
    agent = agent.double()
    for rollout in rollouts:  # float64 state, like the float64 agent
        rollout.initial_state = {k: v.astype("float64") if v.dtype.kind == "f" else v
                                 for k, v in rollout.initial_state.items()}
    settings = LearnerSettings.from_config(
        LearnerConfig(optimizer="adam", learning_rate=1e-3), aux_loss_costs={"commitment": 0.1}
    )
    plain = Learner(copy.deepcopy(agent), settings)
    budget_agent = copy.deepcopy(agent)
    unroll = BudgetedUnroll(mode, 1, budget_agent.parameters())
    # the smallest feasible budget forces the most recomputation
    with pytest.raises(BudgetTooSmallError) as error:
        Learner(budget_agent, settings, unroll=unroll).update(rollouts, learner_version=0)
    unroll = BudgetedUnroll(mode, 3 * error.value.minimum_bytes, budget_agent.parameters())
    budgeted = Learner(budget_agent, settings, unroll=unroll)

    budget_metrics = assert_same_update(plain, budgeted, rollouts)
    assert budget_metrics["bptt/recompute_ratio"] > 1.0


MEMORY_OPTIONS = {"hidden_size": 16, "memory_slots": 64, "word_size": 8, "num_heads": 2, "top_k": 4}


@pytest.mark.parametrize("core", ["sam", "sdnc"])
def test_memory_core_budgeted_update_equals_plain_bptt(core):
    """SAM / SDNC: the memory, usage and links are updated in place; the journal rewinds
    them for every recomputed segment, and the tables' bytes are a fixed part of the budget."""
    env_factory = functools.partial(make_vector_env, "memory_cue", 4, seed=0, options={"delay": 5})
    agent_factory = functools.partial(build_agent, (4,), 2, **agent_options(torso_size=16, core=core, core_options=MEMORY_OPTIONS))
    worker = RolloutWorker(0, env_factory, agent_factory, 20, seed=2)
    agent = agent_factory()
    weights = PublishedWeights(0, [agent.state_dict()])
    worker.unroll(weights)
    rollout = wire.decode(worker.unroll(weights))  # starts from a memory in use
    assert rollout.initial_state["rows_index"].shape[1] > 0
    rollout.initial_state = {k: v.astype("float64") if v.dtype.kind == "f" else v
                             for k, v in rollout.initial_state.items()}
    agent = agent.double()
    settings = LearnerSettings.from_config(LearnerConfig(optimizer="adam", learning_rate=1e-3))
    plain = Learner(copy.deepcopy(agent), settings)
    budget_agent = copy.deepcopy(agent)
    unroll = BudgetedUnroll("msm", 1, budget_agent.parameters(), open_journal=budget_agent.open_journal)
    with pytest.raises(BudgetTooSmallError, match="held whatever the plan") as error:
        Learner(budget_agent, settings, unroll=unroll).update([rollout], learner_version=0)
    assert unroll.fixed_bytes > 4 * 64 * 8 * 8  # at least the memory table
    unroll = BudgetedUnroll("msm", error.value.minimum_bytes + 2048, budget_agent.parameters(),
                            open_journal=budget_agent.open_journal)
    budgeted = Learner(budget_agent, settings, unroll=unroll)

    budget_metrics = assert_same_update(plain, budgeted, [rollout])
    assert budget_metrics["bptt/recompute_ratio"] > 1.5
    assert budget_metrics["bptt/fixed_bytes"] == unroll.fixed_bytes
    assert budget_metrics["bptt/planned_bytes"] <= budget_metrics["bptt/budget_bytes"]


def test_bytes_are_metered_on_the_first_and_every_nth_unroll():
    agent, rollouts = _rollouts("lstm", T=12)
    unroll = BudgetedUnroll("msm", 64 * 2**20, agent.parameters(), measure_every=3)
    learner = Learner(agent, LearnerSettings.from_config(LearnerConfig()), unroll=unroll)
    metered, peaks = [], []
    for _ in range(7):
        metrics = learner.update(rollouts, learner_version=0)
        metered.append(unroll.meter is not None)
        peaks.append(metrics["bptt/measured_peak_bytes"])
    assert metered == [True, False, False, True, False, False, True]
    assert 0 < peaks[0] <= metrics["bptt/budget_bytes"]
    assert peaks[1] == peaks[2] == peaks[0]  # in between, the latest measurement is reported
    with pytest.raises(ValueError, match="measure_every"):
        BudgetedUnroll("msm", 64 * 2**20, agent.parameters(), measure_every=0)


def test_plan_units_cap_the_planners_memory_units():
    """A long unroll with a budget that holds most of its internal states: the plan in at
    most 32 units can store at most 31, so it recomputes more than the plan in 512."""
    agent, rollouts = _rollouts("lstm", T=60)
    costs = {}
    for units in (32, 512):
        unroll = BudgetedUnroll("msm", 64 * 2**20, agent.parameters(), plan_units=units)
        Learner(agent, LearnerSettings.from_config(LearnerConfig()), unroll=unroll).update(rollouts, learner_version=0)
        assert unroll.plan.memory_units <= units
        costs[units] = unroll.plan.cost
    assert costs[512] < costs[32]


def test_a_budget_string_is_parsed_by_the_config_not_by_the_unroll():
    from engram.config import load_config

    config = load_config("configs/smoke.yaml", ["learner.bptt.mode=msm", "learner.bptt.memory_budget=3MiB"])
    assert config.learner.bptt.budget_bytes == 3 * 2**20
    with pytest.raises(TypeError, match="whole number of bytes.*parse_bytes"):
        BudgetedUnroll("msm", "3MiB", torch.nn.Linear(2, 2).parameters())
