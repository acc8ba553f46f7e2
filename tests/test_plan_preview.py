"""`engram plan`: the preview's plan is the one the learner's first update makes on a real
batch (same step sizes, fixed part and schedule), whatever the batch's first step holds."""

from __future__ import annotations

import pytest
import torch

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from engram import build
from engram.cli import main
from engram.config import load_config
from engram.plan_preview import describe, preview
from learners.bptt.unroll import BudgetedUnroll
from learners.learner import make_step_fn

MAZE = ["resources.envs_per_actor=4", "learner.batch_size=4", "learner.unroll_length=30", "agent.lstm.hidden_size=32"]


def maze_config(*overrides):
    return load_config("configs/maze_lstm.yaml", MAZE + list(overrides))


@pytest.mark.parametrize("core", ["lstm", "sam"])
def test_preview_equals_the_learners_first_update(core):
    overrides = ["learner.bptt.mode=msm", "learner.bptt.memory_budget=3MiB", f"agent.core={core}"]
    if core == "sam":
        overrides += ["agent.memory.memory_slots=64", "agent.memory.word_size=8", "agent.memory.hidden_size=32"]
    config = maze_config(*overrides)
    previewed = preview(config)

    spec = build.probe_env(config)
    agent_factory = build.agent_factory(config, spec)
    worker = RolloutWorker(0, build.env_factory(config, seed=1), agent_factory, config.learner.unroll_length, seed=1)
    agent = agent_factory()
    rollout = wire.decode(worker.unroll(PublishedWeights(0, [agent.state_dict()])))
    learner = build.learner(config, agent)
    metrics = learner.update([rollout], learner_version=0)

    assert previewed.steps == learner.unroll.plan.seq_len == config.learner.unroll_length + 1
    assert previewed.plan.cost == learner.unroll.plan.cost
    assert previewed.planned_bytes == metrics["bptt/planned_bytes"]
    assert metrics["bptt/measured_peak_bytes"] <= metrics["bptt/budget_bytes"]
    if core == "sam":
        assert previewed.fixed_bytes_fresh == metrics["bptt/fixed_bytes"]  # both unrolls start from a fresh memory
        assert previewed.fixed_bytes_fresh < previewed.fixed_bytes_full
    text = describe(previewed, render_actions=5)
    assert "forward evaluations per step" in text and "more actions" in text  # the first 5 rendered


def test_step_sizes_do_not_depend_on_whether_the_first_step_starts_episodes():
    """A step that starts an episode shares less with the step before it; the learner sizes
    every step as the larger of the two, whatever step 0 of its first batch holds."""
    config = maze_config("learner.bptt.mode=msm", "learner.bptt.memory_budget=3MiB")
    spec = build.probe_env(config)
    agent = build.agent_factory(config, spec)()
    step_fn = make_step_fn(agent)
    sizes = {}
    for starts in (False, True):
        x = {
            "obs": torch.zeros(1, 4, *spec.observation_shape, dtype=torch.uint8),
            "prev_action": torch.zeros(1, 4, dtype=torch.int64), "prev_reward": torch.zeros(1, 4),
            "first": torch.full((1, 4), starts), "decisions": {},
        }
        unroll = BudgetedUnroll("msm", 3 * 2**20, agent.parameters())
        unroll.plan_for(step_fn, agent.initial_state(4), x, 31)
        sizes[starts] = unroll.step_bytes(31)
    assert sizes[False] == sizes[True]
    assert sizes[False].chained_internal_bytes > sizes[False].internal_bytes  # a reset step is not chained


def test_cli_prints_the_plan_and_refuses_a_budget_below_the_minimum(capsys):
    args = ["plan", "configs/maze_lstm.yaml"] + [f"--set={item}" for item in MAZE]
    assert main(args) == 0  # learner.bptt.mode full: the sizes alone
    assert "full BPTT would hold about" in capsys.readouterr().out
    assert main(args + ["--set=learner.bptt.mode=msm", "--set=learner.bptt.memory_budget=3MiB"]) == 0
    assert "forward evaluations per step" in capsys.readouterr().out
    assert main(args + ["--set=learner.bptt.mode=msm", "--set=learner.bptt.memory_budget=1kB"]) == 2
    assert "raise the budget to at least" in capsys.readouterr().err
    assert main(["plan", "configs/copy_sam.yaml"]) == 2  # a memory task has no RL learner to preview
    assert "run.kind=memory_task" in capsys.readouterr().err


def test_preview_and_learner_say_when_the_plan_units_cap_the_plan(caplog):
    overrides = ["learner.bptt.mode=msm", "learner.bptt.memory_budget=64MiB", "learner.unroll_length=200"]
    with caplog.at_level("WARNING", logger="engram.bptt"):
        capped = preview(maze_config(*overrides, "learner.bptt.plan_units=16"))
    assert capped.plan.memory_units <= 16 and capped.plan.cost > capped.least_cost + 2
    assert "learner.bptt.plan_units" in describe(capped)
    assert "learner.bptt.plan_units (16) holds this plan back" in caplog.text  # the learner's own warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="engram.bptt"):
        roomy = preview(maze_config(*overrides))
    assert roomy.plan.cost < capped.plan.cost and "plan_units" not in describe(roomy) + caplog.text
