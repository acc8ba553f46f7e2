"""Tests of the STRAW cores (agents/straw.py) and the 1-D filterbank (agents/straw_attention.py)."""

from __future__ import annotations

import math

import pytest
import torch

from agents import straw_attention
from agents.agent import Agent
from agents.straw import StrawCore, time_shift
from agents.torsos import VectorTorso
from agent_settings import core_options

NUM_ACTIONS = 5
OBS_SIZE = 6


def make_core(variant="straw", input_size=12, **kwargs):
    options = core_options(variant, plan_length=8, patch_size=4, hidden_size=16, latent_size=3)
    options.update(kwargs)
    return StrawCore(input_size, NUM_ACTIONS, variant=variant, **options)


def busy_state(core, batch_size, seed=0):
    """A non-trivial state: random plan, commitment probabilities in (0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    state = core.initial_state(batch_size)
    state["plan"] = torch.randn(state["plan"].shape, generator=generator)
    state["commitment"] = torch.rand(state["commitment"].shape, generator=generator) * 0.8 + 0.1
    state["steps_since_replan"] = torch.full((batch_size,), 3.0)
    return state


# ----------------------------------------------------------------------------- ρ


def test_time_shift_moves_columns_left_and_appends_fill():
    plan = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)
    shifted = time_shift(plan)
    assert torch.equal(shifted[..., :4], plan[..., 1:])
    assert torch.equal(shifted[..., 4], torch.zeros(2, 3))
    assert torch.equal(time_shift(plan, fill=1.0)[..., 4], torch.ones(2, 3))
    # T shifts empty a plan completely.
    for _ in range(5):
        plan = time_shift(plan)
    assert torch.equal(plan, torch.zeros(2, 3, 5))


# ----------------------------------------------------------------------- filterbank


def reference_filterbank(parameters, plan_length, patch_size):
    """The filterbank written in the paper's notation with Python loops (slow reference)."""
    batch = []
    for centre_raw, log_stride, log_variance, log_intensity in parameters.tolist():
        centre = (centre_raw + 1) / 2 * plan_length
        stride = (plan_length - 1) / (patch_size - 1) * math.exp(log_stride)
        variance = math.exp(log_variance)
        rows = []
        for i in range(1, patch_size + 1):
            mean = centre + (i - patch_size / 2 - 0.5) * stride
            row = [math.exp(-((tau - mean) ** 2) / (2 * variance)) for tau in range(1, plan_length + 1)]
            total = sum(row)
            rows.append([value / total for value in row])
        batch.append(rows)
    return torch.tensor(batch, dtype=torch.float64)


def test_filterbank_matches_reference_and_rows_are_normalised():
    torch.manual_seed(0)
    parameters = torch.randn(6, 4, dtype=torch.float64) * 0.5
    parameters[:, 2] += 1.0  # σ² around e: every row has mass inside the plan
    attention = straw_attention.gaussian_filterbank(parameters, plan_length=20, patch_size=10)
    assert attention.filters.shape == (6, 10, 20)
    torch.testing.assert_close(attention.filters, reference_filterbank(parameters, 20, 10))
    torch.testing.assert_close(attention.filters.sum(dim=2), torch.ones(6, 10, dtype=torch.float64))
    torch.testing.assert_close(attention.intensity, parameters[:, 3].exp())


def test_narrow_filters_sit_on_their_centres():
    # g̃ = 0 -> g = T/2 = 10; δ̃ = (K−1)/(T−1) -> δ = 1; μ_i = 10 + i − 5.5 is a half column,
    # so each narrow filter splits its mass between columns ⌊μ_i⌋ and ⌈μ_i⌉ (1-based).
    parameters = torch.tensor([[0.0, math.log(9 / 19), -6.0, 0.0]], dtype=torch.float64)
    filters = straw_attention.gaussian_filterbank(parameters, 20, 10).filters[0]
    for i in range(1, 11):
        mean = 10 + i - 5.5
        left, right = int(math.floor(mean)) - 1, int(math.ceil(mean)) - 1  # 0-based columns
        assert filters[i - 1, left] == pytest.approx(0.5, abs=1e-6)
        assert filters[i - 1, right] == pytest.approx(0.5, abs=1e-6)


def test_filterbank_never_nan_far_outside_the_plan():
    parameters = torch.tensor([[50.0, 3.0, -8.0, 0.0], [-50.0, 3.0, -8.0, 0.0]])
    filters = straw_attention.gaussian_filterbank(parameters, 20, 10).filters
    assert torch.isfinite(filters).all()
    torch.testing.assert_close(filters.sum(dim=2), torch.ones(2, 10))


def test_read_and_write_patch_shapes_and_intensity():
    torch.manual_seed(1)
    parameters = torch.randn(3, 4)
    attention = straw_attention.gaussian_filterbank(parameters, 20, 10)
    plan = torch.randn(3, NUM_ACTIONS, 20)
    patch = straw_attention.read(plan, attention)
    assert patch.shape == (3, NUM_ACTIONS, 10)
    expected = parameters[:, 3].exp()[:, None, None] * plan @ attention.filters.transpose(1, 2)
    torch.testing.assert_close(patch, expected)
    update = straw_attention.write(patch, attention)
    assert update.shape == (3, NUM_ACTIONS, 20)
    torch.testing.assert_close(update, patch @ attention.filters / parameters[:, 3].exp()[:, None, None])
    # A single filter (the commitment plan's) has no stride.
    single = straw_attention.gaussian_filterbank(parameters[:, :3], 20, 1)
    assert single.filters.shape == (3, 1, 20)
    assert torch.equal(single.stride, torch.zeros(3))


# ------------------------------------------------------------------ plan dynamics


@pytest.mark.parametrize("variant,plan_bound", [("straw", None), ("strawe", None), ("straw", 0.5)])
def test_commit_step_shifts_plans_exactly_and_replan_step_writes(variant, plan_bound):
    torch.manual_seed(2)
    core = make_core(variant, plan_bound=plan_bound)
    state = busy_state(core, 4)
    replan = torch.tensor([0.0, 1.0, 0.0, 1.0])
    replay = {"replan": replan}
    if variant == "strawe":
        replay["latent_noise"] = torch.randn(4, 3)
    output, new_state = core(torch.randn(4, 12), state, replay)
    commit = replan == 0
    assert torch.equal(new_state["plan"][commit], time_shift(state["plan"])[commit])
    assert torch.equal(
        new_state["commitment"][commit], time_shift(state["commitment"], fill=1.0)[commit]
    )
    assert not torch.equal(new_state["plan"][~commit], time_shift(state["plan"])[~commit])
    assert torch.equal(output.policy_logits, new_state["plan"][:, :NUM_ACTIONS, 0])
    assert torch.equal(new_state["steps_since_replan"], torch.tensor([4.0, 1.0, 4.0, 1.0]))
    assert torch.equal(output.telemetry["macro_length"], torch.tensor([0.0, 3.0, 0.0, 3.0]))
    assert torch.equal(output.aux_losses["commitment"], new_state["commitment"][:, 0])


def test_straw_re_replans_on_every_step():
    torch.manual_seed(3)
    core = make_core("straw_re")
    state = core.initial_state(3)
    for _ in range(25):
        previous_plan = state["plan"]
        output, state = core(torch.randn(3, 12), state)
        assert torch.equal(output.telemetry["replan"], torch.ones(3))
        assert not torch.equal(state["plan"], time_shift(previous_plan))
    assert output.decisions == {}
    assert core.decision_shapes == {}
    assert "commitment" not in output.aux_losses


def test_straw_commits_sometimes_and_first_step_replans():
    torch.manual_seed(4)
    core = make_core("straw")
    state = core.initial_state(8)
    flags = []
    for _ in range(40):
        output, state = core(torch.randn(8, 12), state)
        flags.append(output.decisions["replan"])
    flags = torch.stack(flags)
    assert torch.equal(flags[0], torch.ones(8))  # c_0 = [1, 0, …, 0]
    assert 0 < flags.mean() < 1


@pytest.mark.parametrize("variant", ["straw", "strawe"])
def test_a_plan_that_always_commits_is_replaced_every_T_steps_and_never_runs_out(variant):
    """With b very negative the head never asks to re-plan: the plan's end must force it,
    on the step after the plan's last column was used, never one step later."""
    torch.manual_seed(5)
    plan_length = 8
    core = make_core(variant, plan_length=plan_length, commitment_bias_init=-1e4)
    state = core.initial_state(3)
    flags = []
    for step in range(4 * plan_length + 3):
        output, state = core(torch.randn(3, 12), state)
        flags.append(output.decisions["replan"])
        assert (output.policy_logits.abs().amax(dim=1) > 0).all(), f"an exhausted (all-zero) plan at step {step}"
    replan_steps = torch.stack(flags)[:, 0].nonzero().squeeze(1).tolist()
    assert replan_steps == list(range(0, 4 * plan_length + 3, plan_length))
    assert torch.equal(torch.stack(flags)[:, 0], torch.stack(flags)[:, 2])


def test_strawe_kl_is_charged_on_replanning_steps_only():
    torch.manual_seed(5)
    core = make_core("strawe")
    replay = {"replan": torch.tensor([0.0, 1.0]), "latent_noise": torch.randn(2, 3)}
    output, _ = core(torch.randn(2, 12), busy_state(core, 2), replay)
    assert output.aux_losses["kl"][0] == 0
    assert output.aux_losses["kl"][1] > 0
    assert output.aux_losses["kl"][1] == output.telemetry["kl"][1]


def test_latent_noise_changes_the_plan():
    torch.manual_seed(6)
    core = make_core("strawe")
    state, inputs = busy_state(core, 2), torch.randn(2, 12)
    replan = torch.ones(2)
    first, _ = core(inputs, state, {"replan": replan, "latent_noise": torch.zeros(2, 3)})
    second, _ = core(inputs, state, {"replan": replan, "latent_noise": torch.ones(2, 3)})
    assert not torch.equal(first.policy_logits, second.policy_logits)


def test_missing_replay_decision_is_an_error():
    core = make_core("strawe")
    with pytest.raises(KeyError, match="latent_noise"):
        core(torch.randn(2, 12), core.initial_state(2), {"replan": torch.ones(2)})
    with pytest.raises(ValueError, match="shape"):
        core(torch.randn(2, 12), core.initial_state(2),
             {"replan": torch.ones(3), "latent_noise": torch.zeros(2, 3)})


def test_plan_telemetry_is_optional():
    inputs = torch.randn(2, 12)
    quiet, _ = make_core("straw")(inputs, make_core("straw").initial_state(2))
    assert "plan" not in quiet.telemetry
    core = make_core("straw", plan_telemetry=True)
    output, state = core(inputs, core.initial_state(2))
    assert torch.equal(output.telemetry["plan"], state["plan"])
    assert torch.equal(output.telemetry["commitment"], state["commitment"])
    assert not output.telemetry["plan"].requires_grad


def test_value_row_adds_a_plan_row_but_not_a_logit():
    core = make_core("straw", value_row=True)
    output, state = core(torch.randn(2, 12), core.initial_state(2))
    assert state["plan"].shape == (2, NUM_ACTIONS + 1, 8)
    assert output.policy_logits.shape == (2, NUM_ACTIONS)
    assert output.features.shape == (2, core.output_size)


# ------------------------------------------------------------- straight-through


def test_straight_through_gradient_reaches_the_commitment_plan():
    torch.manual_seed(7)
    core = make_core("straw")
    state = busy_state(core, 2)
    commitment = state["commitment"].clone().requires_grad_(True)
    state["commitment"] = commitment
    inputs = torch.randn(2, 12)
    output, _ = core(inputs, state, {"replan": torch.tensor([0.0, 1.0])})
    output.policy_logits.pow(2).sum().backward()
    gradient = commitment.grad
    # Only c_{t−1}[0] decides; the logits of a commit row do not depend on c otherwise.
    assert torch.all(gradient[:, 0] != 0)
    assert torch.equal(gradient[:, 1:], torch.zeros(2, 7))
    # ∂L/∂c_{t−1}[0] = ∂L/∂g_t = <∂L/∂A_t, write> for a loss on the logits only.
    with torch.no_grad():
        replanned, _ = core(inputs, busy_state(core, 2), {"replan": torch.ones(2)})
        committed, _ = core(inputs, busy_state(core, 2), {"replan": torch.zeros(2)})
        write = replanned.policy_logits - committed.policy_logits
        row_replanned = torch.tensor([[False], [True]])
        logits = torch.where(row_replanned, replanned.policy_logits, committed.policy_logits)
        expected = (2 * logits * write).sum(dim=1)
    torch.testing.assert_close(gradient[:, 0], expected)


def test_commitment_parameters_learn_through_a_later_gate():
    """Step 1 re-plans and writes c_1; step 2 commits. The step-2 logits depend on the
    commitment network only through the straight-through gate g_2."""
    torch.manual_seed(8)
    core = make_core("straw")
    state = core.initial_state(3)
    _, state = core(torch.randn(3, 12), state, {"replan": torch.ones(3)})
    output, _ = core(torch.randn(3, 12), state, {"replan": torch.zeros(3)})
    output.policy_logits.pow(2).sum().backward()
    assert core.commitment_bias.grad is not None and core.commitment_bias.grad != 0
    assert core.commitment_attention.weight.grad.abs().sum() > 0


# -------------------------------------------------------------- off-policy replay


def make_agent(variant, **kwargs):
    torch.manual_seed(9)
    return Agent(
        VectorTorso((OBS_SIZE,), output_size=16),
        lambda input_size: make_core(variant, input_size=input_size, **kwargs),
        num_actions=NUM_ACTIONS,
        reward_clip=1.0,
        feature_norm=False,
    )


def run_agent(agent, observations, actions, rewards, dones, state, decisions=None):
    """Step ``agent`` over ``[T, B, ...]`` inputs; returns per-step outputs and the end state."""
    outputs = []
    for t in range(observations.shape[0]):
        replay = None if decisions is None else decisions[t]
        output, state = agent.step(observations[t], actions[t], rewards[t], dones[t], state, replay)
        outputs.append(output)
    return outputs, state


def rollout_inputs(steps=20, batch=4, seed=10):
    generator = torch.Generator().manual_seed(seed)
    observations = torch.randn(steps, batch, OBS_SIZE, generator=generator)
    actions = torch.randint(NUM_ACTIONS, (steps, batch), generator=generator)
    rewards = torch.randn(steps, batch, generator=generator)
    dones = torch.zeros(steps, batch, dtype=torch.bool)
    dones[0] = True
    dones[9, 1] = dones[steps - 6, 2] = True  # episode boundaries inside the unroll
    return observations, actions, rewards, dones


@pytest.mark.parametrize("variant,encoder", [("straw", "feedforward"), ("strawe", "feedforward"),
                                             ("straw_re", "feedforward"), ("straw", "lstm")])
def test_replaying_decisions_reproduces_the_actor_bit_for_bit(variant, encoder):
    agent = make_agent(variant, encoder=encoder)
    inputs = rollout_inputs()
    initial = agent.initial_state(4)
    torch.manual_seed(11)
    with torch.no_grad():
        acted, _ = run_agent(agent, *inputs, initial)
    decisions = [output.decisions for output in acted]
    if variant != "straw_re":
        replans = torch.stack([d["replan"] for d in decisions])
        assert 0 < replans.mean() < 1, "the unroll must contain both commits and re-plans"
    torch.manual_seed(12)  # a different RNG state: only the replayed decisions may matter
    learned, _ = run_agent(agent, *inputs, initial, decisions)
    for actor_step, learner_step in zip(acted, learned):
        assert torch.equal(actor_step.logits, learner_step.logits)
        assert torch.equal(actor_step.value, learner_step.value)
        for name, value in actor_step.aux_losses.items():
            assert torch.equal(value, learner_step.aux_losses[name])
        assert set(actor_step.decisions) == set(agent.core.decision_shapes)
    # Learner-side outputs carry gradients.
    assert learned[-1].logits.requires_grad


def test_replaying_other_decisions_changes_the_logits():
    agent = make_agent("straw")
    inputs = rollout_inputs()
    initial = agent.initial_state(4)
    torch.manual_seed(13)
    with torch.no_grad():
        acted, _ = run_agent(agent, *inputs, initial)
    flipped = [{"replan": 1.0 - output.decisions["replan"]} for output in acted]
    flipped[0] = acted[0].decisions  # the first step of an episode always re-plans
    with torch.no_grad():
        other, _ = run_agent(agent, *inputs, initial, flipped)
    assert not all(torch.equal(a.logits, b.logits) for a, b in zip(acted, other))


def test_episode_start_resets_the_plans():
    agent = make_agent("straw")
    observations, actions, rewards, dones = rollout_inputs()
    with torch.no_grad():
        outputs, _ = run_agent(agent, observations, actions, rewards, dones, agent.initial_state(4))
    # Row 1 starts a new episode at step 9: it must re-plan there from an empty plan.
    assert outputs[9].decisions["replan"][1] == 1
    assert outputs[9].telemetry["macro_length"][1] == 0


def _features_after(core, first_input, second_input):
    """z_t (the first H features) at the second of two steps from the initial state."""
    state = core.initial_state(1)
    _, state = core(first_input, state)
    output, _ = core(second_input, state)
    return output.features[:, :16]  # make_core's hidden_size


@pytest.mark.parametrize("encoder", ["feedforward", "lstm"])
def test_only_the_lstm_encoder_carries_the_past_into_z(encoder):
    torch.manual_seed(15)
    core = make_core("straw_re", encoder=encoder)
    now = torch.randn(1, 12)
    with torch.no_grad():
        a = _features_after(core, torch.randn(1, 12), now)
        b = _features_after(core, torch.randn(1, 12), now)
    assert torch.equal(a, b) == (encoder == "feedforward")


def test_the_lstm_encoder_is_an_lstm_cell_over_the_input():
    torch.manual_seed(16)
    core = make_core("straw_re", encoder="lstm")
    reference = torch.nn.LSTMCell(12, 16)
    reference.load_state_dict(core.encoder.state_dict())
    inputs = torch.randn(3, 2, 12)
    state, hidden = core.initial_state(2), (torch.zeros(2, 16), torch.zeros(2, 16))
    with torch.no_grad():
        for x in inputs:
            output, state = core(x, state)
            hidden = reference(x, hidden)
            torch.testing.assert_close(output.features[:, :16], hidden[0], rtol=0, atol=0)


def test_an_episode_start_resets_the_lstm_encoder():
    agent = make_agent("straw", encoder="lstm")
    observations, actions, rewards, dones = rollout_inputs()
    with torch.no_grad():
        outputs, _ = run_agent(agent, observations, actions, rewards, dones, agent.initial_state(4))
        # Row 1 starts a new episode at step 9; alone from a fresh state it must give the same step.
        fresh, _ = run_agent(agent, observations[9:10, 1:2], actions[9:10, 1:2], rewards[9:10, 1:2],
                             dones[9:10, 1:2], agent.initial_state(1), [{"replan": outputs[9].decisions["replan"][1:2]}])
    torch.testing.assert_close(outputs[9].logits[1:2], fresh[0].logits)


def _latent_log_variance(core, features):
    with torch.no_grad():
        return core.latent(torch.relu(core.encoder(features))).chunk(2, dim=1)[1]


@pytest.mark.parametrize("sigma", [None, 0.1, 0.5])
def test_strawe_starts_with_the_latent_noise_asked_for(sigma):
    torch.manual_seed(17)
    core = make_core("strawe", latent_noise_init=sigma)
    log_variance = _latent_log_variance(core, torch.randn(64, 12))
    if sigma is None:  # torch's init: σ varies with the input around 1
        assert log_variance.std() > 0.01 and log_variance.abs().mean() < 1.0
    else:
        torch.testing.assert_close(log_variance, torch.full_like(log_variance, 2 * math.log(sigma)))


def test_latent_noise_init_must_be_positive():
    with pytest.raises(ValueError, match="latent_noise_init"):
        make_core("strawe", latent_noise_init=0.0)


def test_encoder_must_be_known():
    with pytest.raises(ValueError, match="encoder"):
        make_core("straw", encoder="gru")


# ------------------------------------------------------ memory-efficient BPTT executor


class Float64Torso(torch.nn.Module):
    """A one-layer torso that keeps float64 (VectorTorso casts to float32)."""

    def __init__(self, input_size, output_size):
        super().__init__()
        self.linear = torch.nn.Linear(input_size, output_size)
        self.output_size = output_size

    def forward(self, observations):
        return torch.relu(self.linear(observations))


@pytest.mark.parametrize("variant,encoder", [("straw", "feedforward"), ("strawe", "feedforward"),
                                             ("straw_re", "feedforward"), ("strawe", "lstm")])
def test_checkpointed_unroll_gives_exact_gradients_with_replayed_decisions(variant, encoder):
    from learners.bptt.executor import checkpointed_unroll
    from learners.bptt_plan import plan
    torch.manual_seed(14)
    agent = Agent(
        Float64Torso(OBS_SIZE, 8), lambda size: make_core(variant, input_size=size, encoder=encoder), NUM_ACTIONS,
        reward_clip=1.0, feature_norm=False,
    ).double()
    observations, actions, rewards, dones = rollout_inputs(steps=12, batch=3)
    observations, rewards = observations.double(), rewards.double()
    initial = agent.initial_state(3)
    with torch.no_grad():  # the actor: samples the decisions
        acted, _ = run_agent(agent, observations, actions, rewards, dones, initial)
    decisions = {name: torch.stack([o.decisions[name] for o in acted]) for name in acted[0].decisions}
    inputs = {"obs": observations, "prev_action": actions, "prev_reward": rewards, "first": dones}
    if decisions:
        inputs["decisions"] = decisions

    def step(state, x):  # as learners.learner.make_step_fn
        output, new_state = agent.step(
            x["obs"], x["prev_action"], x["prev_reward"], x["first"], state, x.get("decisions")
        )
        out = {"logits": output.logits, "value": output.value}
        out.update({f"aux.{name}": value for name, value in output.aux_losses.items()})
        return new_state, out

    parameters = [p for p in agent.parameters() if p.requires_grad]
    weights = {}

    def loss_and_gradients(unroll_plan):
        outputs, final_state = checkpointed_unroll(
            step, initial, inputs, unroll_plan, parameters=parameters
        )
        total = 0.0
        for name, value in sorted(outputs.items()):
            if name not in weights:
                weights[name] = torch.randn(value.shape, dtype=value.dtype)
            total = total + (weights[name] * value).sum()
        total = total + final_state["plan"].sum() + final_state["commitment"].sum()
        grads = torch.autograd.grad(total, parameters, allow_unused=True)
        return outputs, [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)]

    reference_outputs, reference = loss_and_gradients(None)
    # The replayed unroll reproduces the actor's logits exactly.
    for t, output in enumerate(acted):
        assert torch.equal(reference_outputs["logits"][t], output.logits)
    for unroll_plan in (plan(12, 3, "hsm"), plan(12, 4, "msm", alpha=2)):
        outputs, got = loss_and_gradients(unroll_plan)
        assert torch.equal(outputs["logits"], reference_outputs["logits"])
        for g, want in zip(got, reference):
            torch.testing.assert_close(g, want, rtol=0, atol=1e-10)
    assert any(g.abs().sum() > 0 for g in reference)


def test_a_diverged_commitment_plan_is_named_not_a_bernoulli_error():
    core = make_core()
    state = core.initial_state(2)
    state["commitment"] = torch.full_like(state["commitment"], float("nan"))
    with pytest.raises(FloatingPointError, match="commitment plan is not finite"):
        core(torch.randn(2, 12), state)


@pytest.mark.parametrize("normalise_read", [True, False])
def test_a_normalised_read_makes_the_write_independent_of_the_plans_scale(normalise_read):
    torch.manual_seed(0)
    core = make_core(normalise_read=normalise_read)
    state = busy_state(core, 3)
    state["commitment"] = torch.ones_like(state["commitment"])  # re-plan now
    x = torch.randn(3, 12)
    writes = []
    for scale in (1.0, 100.0):
        scaled = {**state, "plan": state["plan"] * scale}
        _, new_state = core(x, scaled)
        writes.append(new_state["plan"] - time_shift(scaled["plan"]))
    same = torch.allclose(writes[0], writes[1], atol=1e-3)
    assert same == normalise_read  # the paper's read grows with the plan, and so does its write


def loop_with_gain_above_one(plan_bound):
    """A STRAW-re core whose read -> compute -> write loop over the plan amplifies what it reads."""
    torch.manual_seed(5)
    core = make_core("straw_re", plan_bound=plan_bound)
    with torch.no_grad():
        for layer in (core.intermediate[0], core.intermediate[2], core.patch_writer):
            layer.weight.mul_(8.0)
    return core


@pytest.mark.parametrize("plan_bound", [None, 4.0])
def test_a_bounded_plan_cannot_run_away(plan_bound):
    core = loop_with_gain_above_one(plan_bound)
    state = core.initial_state(3)
    x = torch.randn(3, 12)
    with torch.no_grad():
        for _ in range(30):
            output, state = core(x, state)
    largest = state["plan"].abs().max().item()
    if plan_bound is None:
        assert largest > 1e3  # the paper's additive plan compounds
    else:
        assert largest <= plan_bound
        assert output.policy_logits.abs().max().item() > plan_bound / 2  # bounded, not squashed flat


def test_a_bounded_plan_still_passes_gradients_to_the_planner():
    core = make_core("straw_re", plan_bound=2.0)
    state = busy_state(core, 2)
    output, _ = core(torch.randn(2, 12), state)
    output.policy_logits.sum().backward()
    assert core.patch_writer.weight.grad.abs().sum() > 0


def test_plan_bound_must_be_positive():
    with pytest.raises(ValueError, match="plan_bound must be positive"):
        make_core(plan_bound=0.0)
