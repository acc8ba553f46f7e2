"""The IMPALA loss, checked against values and gradients solved by hand."""

import math

import numpy as np
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
    return Agent(VectorTorso((obs_size,), 8), lambda n: LSTMCore(n, 8), actions, reward_clip=1.0, feature_norm=False)


def _two_step_batch(agent, rewards):
    """An on-policy batch of T = 2 steps whose episode ends on step 0, with its logits and values ``[T + 1]``."""
    T = 2
    observations = torch.randn(T + 1, 1, 3)
    firsts = torch.tensor([[True], [True], [False]])
    actions, rewards = torch.tensor([[1], [0]]), torch.tensor([[r] for r in rewards])
    prev_actions = torch.cat([torch.zeros(1, 1, dtype=torch.long), actions])
    prev_rewards = torch.cat([torch.zeros(1, 1), rewards])
    state, logits, values = agent.initial_state(1), [], []
    with torch.no_grad():
        for t in range(T + 1):
            out, state = agent.step(observations[t], prev_actions[t], prev_rewards[t], firsts[t], state)
            logits.append(out.logits)
            values.append(out.value)
    logits, values = torch.stack(logits), torch.stack(values)[:, 0]
    batch = Batch(observations=observations, firsts=firsts, prev_actions=prev_actions, prev_rewards=prev_rewards,
                  actions=actions, rewards=rewards, behaviour_logits=logits, decisions={},
                  initial_state=agent.initial_state(1), policy_versions=[0])
    return batch, logits, values


def test_one_learner_update_forms_the_loss_a_hand_computation_gives():
    """On-policy (ρ = 1), T = 2, an episode ending on step 0: the advantages are
    A_0 = r_0 − V(x_0) and A_1 = r_1 + γ V(x_2) − V(x_1), and the update reports
    −Σ A log π(a), ½ Σ (v − V)² and Σ π log π of exactly those."""
    agent, T, gamma = _agent(), 2, 0.9
    batch, logits, values = _two_step_batch(agent, [1.0, -0.5])
    actions = batch.actions
    log_pi = torch.log_softmax(logits[:T, 0], -1).gather(1, actions).squeeze(1)
    a0 = 1.0 - values[0]
    v1_target = -0.5 + gamma * values[2]
    a1 = v1_target - values[1]
    expected_policy = -(log_pi[0] * a0 + log_pi[1] * a1)
    expected_value = 0.5 * ((1.0 - values[0]) ** 2 + (v1_target - values[1]) ** 2)
    p = torch.softmax(logits[:T, 0], -1)
    expected_entropy = (p * p.log()).sum()

    settings = LearnerSettings.from_config(LearnerConfig(discount=gamma, advantage_normalization="batch"))
    normalized, _ = Learner(agent, settings).loss_terms(batch)
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


def test_the_reward_scale_multiplies_the_rewards_before_the_clip():
    """Rewards 1 and −0.5, scale 4, clip 1.5: the value targets see 1.5 (4 clipped) and −1.5
    (−2 clipped), where the clip alone would give 1 and −0.5."""
    agent, gamma = _agent(), 0.9
    batch, _, values = _two_step_batch(agent, [1.0, -0.5])
    settings = LearnerSettings.from_config(LearnerConfig(discount=gamma, reward_scale=4.0, reward_clip=1.5))
    loss, _ = Learner(agent, settings).loss_terms(batch)
    expected = 0.5 * ((1.5 - values[0]) ** 2 + (-1.5 + gamma * values[2] - values[1]) ** 2)
    assert float(loss.value.detach()) == pytest.approx(float(expected), rel=1e-5)


def _reference_impala_loss(logits, values, bootstrap, behaviour_logits, actions, rewards, discounts,
                           baseline_cost, entropy_cost, rho_bar, pg_rho_bar):
    """Espeholt et al. 2018 in their notation, one step at a time in float64 numpy: the total
    loss and its gradient with respect to the logits and V(x_s)."""
    T, B, A = logits.shape

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pi, mu = softmax(logits), softmax(behaviour_logits)
    total, d_logits, d_values = 0.0, np.zeros_like(logits), np.zeros_like(values)
    for b in range(B):
        V = np.append(values[:, b], bootstrap[b])  # V(x_0) … V(x_T)
        rho = np.array([pi[t, b, actions[t, b]] / mu[t, b, actions[t, b]] for t in range(T)])
        delta = [min(rho_bar, rho[t]) * (rewards[t, b] + discounts[t, b] * V[t + 1] - V[t]) for t in range(T)]
        c = np.minimum(1.0, rho)
        v = np.empty(T + 1)
        v[T] = V[T]
        for s in range(T):  # eq. 1: v_s = V(x_s) + Σ_t γ^{t−s} (Π_{i<t} c_i) δ_t, with per-step γ_t
            acc, weight = 0.0, 1.0
            for t in range(s, T):
                acc += weight * delta[t]
                weight *= discounts[t, b] * c[t]
            v[s] = V[s] + acc
        for s in range(T):
            advantage = min(pg_rho_bar, rho[s]) * (rewards[s, b] + discounts[s, b] * v[s + 1] - V[s])
            a = actions[s, b]
            log_pi = np.log(pi[s, b])
            neg_entropy = float((pi[s, b] * log_pi).sum())
            total += -advantage * log_pi[a] + baseline_cost * 0.5 * (v[s] - V[s]) ** 2 + entropy_cost * neg_entropy
            one_hot = np.eye(A)[a]
            d_logits[s, b] = -advantage * (one_hot - pi[s, b]) + entropy_cost * pi[s, b] * (log_pi - neg_entropy)
            d_values[s, b] = -baseline_cost * (v[s] - V[s])
    return total, d_logits, d_values


@pytest.mark.parametrize("rho_bar, pg_rho_bar", [(1.0, 1.0), (0.8, 2.0)])
def test_the_impala_loss_and_its_gradient_match_the_paper_step_by_step(rho_bar, pg_rho_bar):
    rng = np.random.default_rng(3)
    T, B, A = 5, 3, 4
    logits = torch.tensor(rng.normal(size=(T, B, A)), requires_grad=True)
    values = torch.tensor(rng.normal(size=(T, B)), requires_grad=True)
    bootstrap = torch.tensor(rng.normal(size=B), requires_grad=True)
    behaviour = torch.tensor(rng.normal(size=(T, B, A)))
    actions = torch.tensor(rng.integers(0, A, size=(T, B)))
    rewards = torch.tensor(rng.normal(size=(T, B)))
    discounts = torch.full((T, B), 0.9, dtype=torch.float64)
    discounts[2, 1] = 0.0  # an episode ends inside the unroll
    costs = {"baseline_cost": 0.5, "entropy_cost": 0.01}

    loss = losses.impala_loss(
        logits=logits, values=values, bootstrap_value=bootstrap, behaviour_logits=behaviour, actions=actions,
        rewards=rewards, discounts=discounts, clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar, **costs,
    )
    loss.total.backward()
    expected, d_logits, d_values = _reference_impala_loss(
        logits.detach().numpy(), values.detach().numpy(), bootstrap.detach().numpy(), behaviour.numpy(),
        actions.numpy(), rewards.numpy(), discounts.numpy(), rho_bar=rho_bar, pg_rho_bar=pg_rho_bar, **costs,
    )
    assert float(loss.total.detach()) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(logits.grad.numpy(), d_logits, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(values.grad.numpy(), d_values, rtol=1e-9, atol=1e-12)
    assert bootstrap.grad is None or float(bootstrap.grad.abs().sum()) == 0.0  # targets carry no gradient


def test_auxiliary_losses_count_with_their_own_weight_and_only_with_one():
    logits, values = LOGITS.clone().double(), torch.zeros(1, 1, dtype=torch.float64)
    common = dict(logits=logits, values=values, bootstrap_value=torch.zeros(1, dtype=torch.float64),
                  behaviour_logits=logits, actions=torch.tensor([[1]]), rewards=torch.zeros(1, 1, dtype=torch.float64),
                  discounts=torch.zeros(1, 1, dtype=torch.float64), baseline_cost=0.5, entropy_cost=0.01,
                  clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0)
    base = losses.impala_loss(**common).total
    aux = {"commitment": torch.tensor(3.0, dtype=torch.float64), "kl": torch.tensor(5.0, dtype=torch.float64)}
    with_aux = losses.impala_loss(**common, aux=aux, aux_costs={"commitment": 0.1}).total
    assert float(with_aux - base) == pytest.approx(0.3)
