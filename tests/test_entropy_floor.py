"""learner.entropy_floor: the entropy cost grows while the policy is surer than the floor,
never drops below the configured cost, and pulls a collapsed policy back out."""

import math

import pytest
import torch

from engram import build
from engram.config import ConfigError, LearnerConfig, load_config
from learners.entropy_floor import EntropyFloor
from learners.losses import entropy_loss
from smoke_learner import smoke_learner


def test_the_cost_grows_geometrically_below_the_floor_and_returns_to_the_configured_cost_above_it():
    floor = EntropyFloor(0.5, rate=0.2, num_actions=4)
    assert floor.cost(0.01) == 0.01
    for _ in range(10):
        floor.observe(0.1)  # 0.4 nats short: m grows by 0.08 an update
    assert floor.cost(0.01) == pytest.approx(0.01 * math.exp(0.8))
    for _ in range(100):
        floor.observe(1.2)  # well above: m falls back, but not below 0
    assert floor.cost(0.01) == 0.01


def test_without_a_floor_the_cost_never_moves():
    floor = EntropyFloor(None, rate=0.2, num_actions=4)
    for _ in range(10):
        floor.observe(0.0)
    assert floor.cost(0.03) == 0.03


def test_a_floor_no_policy_can_meet_is_refused():
    with pytest.raises(ValueError, match=r"not below ln 4"):
        EntropyFloor(math.log(4), rate=0.1, num_actions=4)


def _entropy_after_training(floor: float | None) -> float:
    """A policy collapsed onto one of 4 actions (logits 12 apart), trained on its entropy term alone."""
    logits = torch.tensor([[12.0, 0.0, 0.0, 0.0]], requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=0.5)
    controller = EntropyFloor(floor, rate=0.2, num_actions=4)
    for _ in range(400):
        loss = controller.cost(0.01) * entropy_loss(logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        controller.observe(-float(entropy_loss(logits.detach())))
    return -float(entropy_loss(logits.detach()))


def test_a_collapsed_policy_climbs_back_to_the_floor_only_with_the_floor():
    assert _entropy_after_training(None) < 0.01  # ∂H/∂logits has all but vanished at the collapse
    assert _entropy_after_training(0.5) > 0.45


def test_a_floor_without_an_entropy_cost_is_refused_at_load():
    with pytest.raises(ConfigError, match="entropy_floor scales learner.entropy_cost"):
        load_config("configs/smoke.yaml", ["learner.entropy_floor=0.5", "learner.entropy_cost=0"])
    assert LearnerConfig(entropy_floor=0.5).entropy_floor == 0.5


def test_the_learner_raises_its_entropy_cost_below_the_floor_and_a_resume_keeps_it():
    floor = 0.5
    config, spec, learner, batch = smoke_learner([f"learner.entropy_floor={floor}"])
    with torch.no_grad():
        learner.agent.policy_head.bias[0] += 6.0  # a policy sure of action 0, far below the floor
    costs, entropies = [], []
    for _ in range(3):
        metrics = learner.update(batch())
        costs.append(metrics["learner/entropy_cost"])
        entropies.append(metrics["learner/entropy_per_step"])
    assert all(h < floor for h in entropies)
    assert costs[0] == config.learner.entropy_cost
    assert costs[0] < costs[1] < costs[2]
    assert costs[2] == pytest.approx(
        config.learner.entropy_cost * math.exp(config.learner.entropy_floor_rate * sum(floor - h for h in entropies[:2]))
    )
    resumed = build.learner(config, build.agent_factory(config, spec)())
    resumed.load_state_dict(learner.state_dict())
    assert resumed.entropy_floor.cost(1.0) == learner.entropy_floor.cost(1.0) > 1.0
    floor_off = config.model_copy(update={"learner": config.learner.model_copy(update={"entropy_floor": None})})
    resumed_without = build.learner(floor_off, build.agent_factory(floor_off, spec)())
    resumed_without.load_state_dict(learner.state_dict())  # a resume may turn the floor off
    assert resumed_without.entropy_floor.cost(0.01) == 0.01


def test_without_a_floor_the_learner_keeps_its_entropy_cost_and_logs_the_entropy_per_step():
    config, _, learner, batch = smoke_learner([])
    for _ in range(2):
        rollouts = batch()
        steps = config.learner.unroll_length * config.learner.batch_size
        metrics = learner.update(rollouts)
        assert metrics["learner/entropy_cost"] == config.learner.entropy_cost
        assert metrics["learner/entropy_per_step"] == pytest.approx(-metrics["loss/entropy"] / steps)


def test_a_floor_at_or_above_ln_a_is_refused_when_the_learner_is_built():
    spec = build.probe_env(load_config("configs/smoke.yaml"))
    config = load_config("configs/smoke.yaml", [f"learner.entropy_floor={math.log(spec.num_actions)}"])
    with pytest.raises(ValueError, match="no policy could meet it"):
        build.learner(config, build.agent_factory(config, spec)())
