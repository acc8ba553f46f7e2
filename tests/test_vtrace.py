"""V-trace against RLlib's torch implementation and against the paper's sum (eq. 1)."""

import pytest
import torch

from learners import vtrace


def _random_inputs(T=7, B=5, A=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        behaviour_logits=torch.randn(T, B, A, generator=g, dtype=torch.float64),
        target_logits=torch.randn(T, B, A, generator=g, dtype=torch.float64),
        actions=torch.randint(0, A, (T, B), generator=g),
        discounts=0.9 * (torch.rand(T, B, generator=g, dtype=torch.float64) > 0.2).double(),
        rewards=torch.randn(T, B, generator=g, dtype=torch.float64),
        values=torch.randn(T, B, generator=g, dtype=torch.float64),
        bootstrap_value=torch.randn(B, generator=g, dtype=torch.float64),
    )


def _paper_vs(log_rhos, discounts, rewards, values, bootstrap_value, rho_bar, c_bar=1.0):
    """v_s = V(x_s) + Σ_t (Π_{i<t} γ_i c_i) ρ_t (r_t + γ_t V(x_{t+1}) − V(x_t)), literally."""
    T = values.shape[0]
    rhos = log_rhos.exp()
    values_next = torch.cat([values[1:], bootstrap_value[None]])
    vs = torch.empty_like(values)
    for s in range(T):
        total = values[s].clone()
        weight = torch.ones_like(values[s])
        for t in range(s, T):
            delta = rhos[t].clamp(max=rho_bar) * (rewards[t] + discounts[t] * values_next[t] - values[t])
            total += weight * delta
            weight = weight * discounts[t] * rhos[t].clamp(max=c_bar)
        vs[s] = total
    return vs


@pytest.mark.parametrize("rho_bar,pg_rho_bar", [(1.0, 1.0), (2.0, 0.5), (0.7, 3.0)])
def test_matches_rllib_from_logits(rho_bar, pg_rho_bar):
    from ray.rllib.algorithms.impala import vtrace_torch as rllib_vtrace

    # RLlib computes in float32, so both sides get float32 inputs.
    inputs = {k: (v.float() if v.is_floating_point() else v) for k, v in _random_inputs(seed=int(rho_bar * 10)).items()}
    ours = vtrace.from_logits(**inputs, clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar)
    log_rhos = vtrace.action_log_probs(inputs["target_logits"], inputs["actions"]) - vtrace.action_log_probs(
        inputs["behaviour_logits"], inputs["actions"]
    )
    reference = rllib_vtrace.from_importance_weights(
        log_rhos=log_rhos,
        discounts=inputs["discounts"],
        rewards=inputs["rewards"],
        values=inputs["values"],
        bootstrap_value=inputs["bootstrap_value"],
        clip_rho_threshold=rho_bar,
        clip_pg_rho_threshold=pg_rho_bar,
    )
    torch.testing.assert_close(ours.vs, reference.vs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.pg_advantages, reference.pg_advantages, rtol=1e-6, atol=1e-6)


def test_matches_the_papers_sum():
    inputs = _random_inputs(T=9, seed=3)
    log_rhos = vtrace.action_log_probs(inputs["target_logits"], inputs["actions"]) - vtrace.action_log_probs(
        inputs["behaviour_logits"], inputs["actions"]
    )
    ours = vtrace.from_importance_weights(
        log_rhos=log_rhos,
        discounts=inputs["discounts"],
        rewards=inputs["rewards"],
        values=inputs["values"],
        bootstrap_value=inputs["bootstrap_value"],
        clip_rho_threshold=1.5,
    )
    expected = _paper_vs(log_rhos, inputs["discounts"], inputs["rewards"], inputs["values"], inputs["bootstrap_value"], 1.5)
    torch.testing.assert_close(ours.vs, expected, rtol=1e-12, atol=1e-12)


def test_on_policy_without_clipping_is_the_n_step_return():
    inputs = _random_inputs(T=6, seed=4)
    inputs["target_logits"] = inputs["behaviour_logits"]
    ours = vtrace.from_logits(**inputs)
    expected = torch.empty_like(inputs["values"])
    running = inputs["bootstrap_value"]
    for t in reversed(range(6)):
        running = inputs["rewards"][t] + inputs["discounts"][t] * running
        expected[t] = running
    torch.testing.assert_close(ours.vs, expected, rtol=1e-12, atol=1e-12)


def test_returns_carry_no_gradient():
    inputs = _random_inputs()
    inputs["values"].requires_grad_(True)
    ours = vtrace.from_logits(**inputs)
    assert not ours.vs.requires_grad and not ours.pg_advantages.requires_grad
