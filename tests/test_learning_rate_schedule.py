"""learner.learning_rate_schedule: a linear decay to 0 at the run's budget, counted in batches,
applied by the learner before each step and again after a resume."""

import pytest

from engram import build
from engram.config import LearnerConfig
from learners.learner import LearnerSettings
from smoke_learner import smoke_learner


def test_a_linear_schedule_falls_to_zero_at_the_budget_and_stays_there():
    config = LearnerConfig(learning_rate=0.4, learning_rate_schedule="linear", unroll_length=5, batch_size=4)
    settings = LearnerSettings.from_config(config, total_steps=4 * 5 * 4)  # 4 batches of 20 steps
    assert [settings.step_size(k) for k in range(6)] == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.0, 0.0])
    constant = LearnerSettings.from_config(config.model_copy(update={"learning_rate_schedule": "constant"}),
                                           total_steps=80)
    assert [constant.step_size(k) for k in (0, 3, 10)] == [0.4, 0.4, 0.4]


def test_a_linear_schedule_without_a_budget_is_refused():
    with pytest.raises(ValueError, match="needs the run's total_steps"):
        LearnerSettings.from_config(LearnerConfig(learning_rate_schedule="linear"))


def test_the_learner_steps_at_the_scheduled_rate_and_a_resumed_learner_continues_the_schedule():
    # smoke.yaml: unroll 20, batch 32 -> 640 steps a batch; 2,560 steps = 4 batches.
    config, spec, learner, next_batch = smoke_learner(["learner.learning_rate_schedule=linear", "run.total_steps=2560",
                                                       "learner.optimizer=adam", "learner.learning_rate=0.01"])
    rates = [learner.update(next_batch())["learner/learning_rate"] for _ in range(3)]
    assert rates == pytest.approx([0.01, 0.0075, 0.005])

    resumed = build.learner(config, build.agent_factory(config, spec)())
    resumed.load_state_dict(learner.state_dict())
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)  # the fourth batch's rate
