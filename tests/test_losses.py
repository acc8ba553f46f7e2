"""The IMPALA loss, checked against values and gradients solved by hand."""

import math

import pytest
import torch

from agents.agent import Agent
from agents.lstm_core import LSTMCore
from agents.torsos import VectorTorso
from engram.config import LearnerConfig
from learners import losses
from learners.batch import Batch
from learners.learner import Learner, LearnerSettings

LOGITS = torch.tensor([[[0.0, math.log(3.0)]]])  # [T=1, B=1, A=2]: π = (1/4, 3/4)


def test_policy_gradient_loss_and_its_gradient_by_hand():
    logits = LOGITS.clone().requires_grad_()
    loss = losses.policy_gradient_loss(logits, torch.tensor([[1]]), torch.tensor([[2.0]]))
    assert loss.item() == pytest.approx(-2.0 * math.log(0.75))
    loss.backward()
    # ∂/∂z of −A log π(a) = −A (onehot(a) − π)
    assert logits.grad[0, 0].tolist() == pytest.approx([0.5, -0.5])


def test_the_advantage_carries_no_gradient():
    advantages = torch.tensor([[2.0]], requires_grad=True)
    losses.policy_gradient_loss(LOGITS.clone().requires_grad_(), torch.tensor([[1]]), advantages).backward()
    assert advantages.grad is None


def test_baseline_loss_and_its_gradient_by_hand():
    values = torch.tensor([[0.5, -1.0]], requires_grad=True)
    loss = losses.baseline_loss(values, torch.tensor([[1.5, 1.0]]))
    assert loss.item() == pytest.approx(0.5 * (1.0 + 4.0))
    loss.backward()
    assert values.grad[0].tolist() == pytest.approx([-1.0, -2.0])


def test_entropy_loss_and_its_gradient_by_hand():
    logits = LOGITS.clone().requires_grad_()
    loss = losses.entropy_loss(logits)
    p = torch.tensor([0.25, 0.75])
    negative_entropy = float((p * p.log()).sum())
    assert loss.item() == pytest.approx(negative_entropy)
    loss.backward()
    # ∂/∂z_j Σ π log π = π_j (log π_j − Σ π log π): minimising it pushes toward uniform
    assert logits.grad[0, 0].tolist() == pytest.approx((p * (p.log() - negative_entropy)).tolist())


def test_batch_advantage_normalization_by_hand():
    normalize = losses.AdvantageNormalizer("batch")
    assert normalize(torch.tensor([[1.0], [3.0]])).flatten().tolist() == pytest.approx([-1.0, 1.0])


def test_running_advantage_normalization_is_a_bias_corrected_average_of_squares():
    """After batches with mean squares 4 and 1, a bias-corrected moving average with decay d
    weighs them d : 1, so E[A²] = (4d + 1) / (d + 1)."""
    d = 0.99
    normalize = losses.AdvantageNormalizer("running", decay=d)
    assert normalize(torch.tensor([2.0, -2.0])).tolist() == pytest.approx([1.0, -1.0])
    second = normalize(torch.tensor([1.0, 1.0]))
    assert second.tolist() == pytest.approx([1.0 / math.sqrt((4 * d + 1) / (d + 1))] * 2, rel=1e-5)
    restored = losses.AdvantageNormalizer("running", decay=d)
    restored.load_state_dict(normalize.state_dict())
    assert restored(torch.tensor([3.0])).item() == pytest.approx(normalize(torch.tensor([3.0])).item())


def test_no_advantage_normalization_leaves_them_as_they_are():
    advantages = torch.tensor([0.5, -0.25])
    assert losses.AdvantageNormalizer("none")(advantages).tolist() == [0.5, -0.25]
    with pytest.raises(ValueError, match="unknown advantage normalization 'bach'"):
        losses.AdvantageNormalizer("bach")


def _agent(obs_size=3, actions=2):
    torch.manual_seed(0)
    return Agent(VectorTorso((obs_size,), 8), lambda n: LSTMCore(n, 8), actions)


def test_one_learner_update_forms_the_loss_a_hand_computation_gives():
    """On-policy (ρ = 1), T = 2, an episode ending on step 0: the advantages are
    A_0 = r_0 − V(x_0) and A_1 = r_1 + γ V(x_2) − V(x_1), and the update reports
    −Σ A log π(a), ½ Σ (v − V)² and Σ π log π of exactly those."""
    agent, T, gamma = _agent(), 2, 0.9
    observations = torch.randn(T + 1, 1, 3)
    firsts = torch.tensor([[True], [True], [False]])
    actions, rewards = torch.tensor([[1], [0]]), torch.tensor([[1.0], [-0.5]])
    prev_actions = torch.cat([torch.zeros(1, 1, dtype=torch.long), actions])
    prev_rewards = torch.cat([torch.zeros(1, 1), rewards])
    state, logits, values = agent.initial_state(1), [], []
    with torch.no_grad():
        for t in range(T + 1):
            out, state = agent.step(observations[t], prev_actions[t], prev_rewards[t], firsts[t], state)
            logits.append(out.logits)
            values.append(out.value)
    logits, values = torch.stack(logits), torch.stack(values)[:, 0]
    log_pi = torch.log_softmax(logits[:T, 0], -1).gather(1, actions).squeeze(1)
    a0 = 1.0 - values[0]
    v1_target = -0.5 + gamma * values[2]
    a1 = v1_target - values[1]
    expected_policy = -(log_pi[0] * a0 + log_pi[1] * a1)
    expected_value = 0.5 * ((1.0 - values[0]) ** 2 + (v1_target - values[1]) ** 2)
    p = torch.softmax(logits[:T, 0], -1)
    expected_entropy = (p * p.log()).sum()

    batch = Batch(observations=observations, firsts=firsts, prev_actions=prev_actions, prev_rewards=prev_rewards,
                  actions=actions, rewards=rewards, behaviour_logits=logits, decisions={},
                  initial_state=agent.initial_state(1), policy_versions=[0])
    normalized = Learner(agent, LearnerSettings.from_config(LearnerConfig(discount=gamma, advantage_normalization="batch"))).loss_terms(batch)
    mean, std = (a0 + a1) / 2, abs(a0 - a1) / 2
    expected_normalized = -(log_pi[0] * (a0 - mean) / std + log_pi[1] * (a1 - mean) / std)
    assert float(normalized.policy.detach()) == pytest.approx(float(expected_normalized), rel=1e-4)
    assert float(normalized.value.detach()) == pytest.approx(float(expected_value), rel=1e-5)

    metrics = Learner(agent, LearnerSettings.from_config(LearnerConfig(discount=gamma))).update_batch(batch)
    assert metrics["learner/mean_rho"] == pytest.approx(1.0)
    assert metrics["loss/policy"] == pytest.approx(float(expected_policy), rel=1e-5)
    assert metrics["loss/value"] == pytest.approx(float(expected_value), rel=1e-5)
    assert metrics["loss/entropy"] == pytest.approx(float(expected_entropy), rel=1e-5)
    assert metrics["loss/total"] == pytest.approx(
        float(expected_policy + 0.5 * expected_value + 0.01 * expected_entropy), rel=1e-5)
