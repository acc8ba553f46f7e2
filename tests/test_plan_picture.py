"""STRAW's plan picture (``straw/plan``) from a real STRAW rollout, and the action names it
labels rows with, checked against gymnasium's ALE wrapper."""

import numpy as np
import pytest

from engram import core_telemetry, plan_picture
from envs.registry import action_names


@pytest.mark.parametrize("full", [True, False])
def test_atari_action_names_are_the_ones_gymnasiums_wrapper_gives(full):
    gymnasium = pytest.importorskip("gymnasium")
    ale_py = pytest.importorskip("ale_py")
    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Breakout-v5", full_action_space=full)
    try:
        expected = env.unwrapped.get_action_meanings()
    finally:
        env.close()
    assert action_names("atari", len(expected), {"game": "breakout", "full_action_space": full}) == expected


def test_other_kinds_name_their_actions_or_number_them():
    assert action_names("maze", 4) == ["north", "east", "south", "west"]
    assert action_names("popgym", 3, {"id": "x"}) == ["action 0", "action 1", "action 2"]
    assert action_names("maze", 5) == [f"action {i}" for i in range(5)]  # a count that does not fit: numbered


def test_softmax_rows_normalises_each_plan_step_over_the_actions():
    logits = np.random.default_rng(0).normal(size=(5, 7)) * 30
    probabilities = plan_picture.softmax_rows(logits)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0)
    assert np.array_equal(probabilities.argmax(axis=0), logits.argmax(axis=0))


def _straw_rollout():
    from actors import wire
    from actors.rollout import PublishedWeights, RolloutWorker
    from engram import build
    from engram.config import load_config

    config = load_config("configs/maze_straw.yaml", [
        "agent.straw.hidden_size=16", "agent.straw.plan_length=8", "agent.straw.patch_size=4",
        "resources.envs_per_actor=2", "learner.batch_size=2",
    ])
    make_agent = build.agent_factory(config, build.probe_env(config))
    worker = RolloutWorker(0, build.env_factory(config, seed=0), make_agent, 24, seed=0)
    return wire.decode(worker.unroll(PublishedWeights(0, [make_agent().state_dict()])))


def test_a_straw_rollout_draws_a_labelled_plan_picture():
    rollout = _straw_rollout()
    assert {"plan", "commitment", "replan"} <= set(rollout.telemetry)
    assert "straw/plan" not in core_telemetry.summarise([rollout]).images  # only when pictures are asked for
    names = action_names("maze", 4)
    image = core_telemetry.summarise([rollout], pictures=True, action_names=names, where="maze").images["straw/plan"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 330 <= image.shape[1] <= 600  # TensorBoard's width: little shrinking, legible text
    assert image.std() > 10

    # what is drawn follows the data: the re-plan marks, the names, the plan itself
    def drawn(telemetry=rollout.telemetry, labels=names):
        return plan_picture.draw(telemetry, rollout.actions, labels, title="t")

    baseline = drawn()
    assert np.array_equal(drawn(), baseline)  # deterministic, so the differences below are the data's
    replan = rollout.telemetry["replan"].copy()
    replan[:, 0] = 1.0 - replan[:, 0]
    assert not np.array_equal(drawn({**rollout.telemetry, "replan": replan}), baseline)
    assert not np.array_equal(drawn(labels=["N", "E", "S", "W"]), baseline)
    plan = rollout.telemetry["plan"].copy()
    plan[-1, 0, 0] += 5.0  # the newest plan favours the first action at every step
    assert not np.array_equal(drawn({**rollout.telemetry, "plan": plan}), baseline)


def test_an_lstm_rollout_has_no_plan_picture():
    from tests.test_memory_picture import _rollout

    assert "straw/plan" not in core_telemetry.summarise([_rollout("lstm")], pictures=True).images
