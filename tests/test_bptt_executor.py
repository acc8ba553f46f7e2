"""Tests of the checkpointed unroll executor (learners/bptt/): float64 gradients against
plain BPTT (autograd through a plain Python loop) for an LSTM cell, a GRU cell and the engram
LSTM agent, step counts against Plan.cost, and bytes held for backward against the budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.agent import Agent
from agents.lstm_core import LSTMCore
from learners.bptt import executor
from learners.bptt.executor import checkpointed_unroll
from learners.bptt.meter import SavedTensorMeter, StepBytes, measure_step_bytes
from learners.bptt.step_values import flatten
from learners.bptt.unroll import plan_within_budget
from learners.bptt_plan import BudgetTooSmallError, Op, plan, plan_for_budget

T, B = 11, 3
PLANS = [
    ("hsm", 1, None), ("hsm", 2, None), ("hsm", 4, None), ("hsm", T, None),
    ("ism", 1, 2), ("ism", 5, 2), ("ism", 3 * T, 3),
    ("msm", 1, 2), ("msm", 3, 2), ("msm", 6, 3), ("msm", 4 * T, 3),
]


class Counted:
    """Wraps a step function and counts its calls."""

    def __init__(self, step_fn):
        self.step_fn, self.calls = step_fn, 0

    def __call__(self, state, x):
        self.calls += 1
        return self.step_fn(state, x)


def make_lstm():
    torch.manual_seed(0)
    cell = nn.LSTMCell(4, 5).double()
    head = nn.Linear(5, 2).double()

    def step(state, x):
        h, c = cell(x["features"], (state["core"]["h"], state["core"]["c"]))
        return {"core": {"h": h, "c": c}, "count": state["count"] + 1}, {"y": head(h), "h": h}

    state0 = {"core": {"h": torch.randn(B, 5, dtype=torch.float64), "c": torch.randn(B, 5, dtype=torch.float64)}, "count": 0}
    inputs = {"features": torch.randn(T, B, 4, dtype=torch.float64)}
    return step, state0, inputs, list(cell.parameters()) + list(head.parameters())


def make_gru():
    torch.manual_seed(1)
    cell = nn.GRUCell(3, 6).double()

    def step(state, x):
        h = cell(x["features"] * x["scale"][:, None], state["h"])
        return {"h": h}, {"h2": h * h}

    state0 = {"h": torch.randn(B, 6, dtype=torch.float64)}
    inputs = {"features": torch.randn(T, B, 3, dtype=torch.float64), "scale": torch.rand(T, B, dtype=torch.float64)}
    return step, state0, inputs, list(cell.parameters())


class Float64Torso(nn.Module):
    def __init__(self, size, output_size):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(size, output_size), nn.ReLU())
        self.output_size = output_size

    def forward(self, observations):
        return self.layers(observations)


def make_agent():
    torch.manual_seed(2)
    num_actions = 3
    # VectorTorso casts observations with .float() (float32), so a float64 check needs a
    # torso that keeps the dtype; the rest of the agent (one-hot, reward, LSTM core, heads)
    # is the real engram code.
    torso = Float64Torso(4, 8)
    agent = Agent(torso, lambda size: LSTMCore(size, hidden_size=6), num_actions, reward_clip=1.0, feature_norm=False).double()

    def step(state, x):
        out, new_state = agent.step(x["obs"], x["prev_action"], x["prev_reward"], x["done"], state)
        return new_state, {"logits": out.logits, "value": out.value}

    state0 = {name: torch.randn_like(v, dtype=torch.float64) for name, v in agent.initial_state(B).items()}
    done = torch.rand(T, B) < 0.2
    inputs = {
        "obs": torch.randn(T, B, 4, dtype=torch.float64),
        "prev_action": torch.randint(0, num_actions, (T, B)),
        "prev_reward": torch.randn(T, B, dtype=torch.float64),
        "done": done,
    }
    return step, state0, inputs, list(agent.parameters())


def loss_of(outputs, final_state, weights):
    """A loss touching every output and the final state, with fixed random weights."""
    flat_out = flatten(outputs)
    flat_state = flatten(final_state)
    total = 0.0
    for path, value in sorted({**flat_out, **{("state",) + k: v for k, v in flat_state.items()}}.items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if path not in weights:
                weights[path] = torch.randn(value.shape, dtype=value.dtype, generator=torch.Generator().manual_seed(len(weights)))
            total = total + (weights[path] * value).sum()
    return total


def gradients(step, state0, inputs, params, unroll_plan):
    state0 = {k: ({kk: vv.clone().requires_grad_() for kk, vv in v.items()} if isinstance(v, dict)
                  else v.clone().requires_grad_() if isinstance(v, torch.Tensor) else v) for k, v in state0.items()}
    counted = Counted(step)
    outputs, final_state = checkpointed_unroll(counted, state0, inputs, unroll_plan, parameters=params)
    loss = loss_of(outputs, final_state, weights={})
    for p in params:
        p.grad = None
    loss.backward()
    state_leaves = [v for v in flatten(state0).values() if isinstance(v, torch.Tensor)]
    grads = [p.grad.clone() for p in params] + [s.grad.clone() for s in state_leaves]
    return loss.detach(), grads, outputs, final_state, counted.calls


@pytest.mark.parametrize("make", [make_lstm, make_gru, make_agent], ids=["lstm", "gru", "agent"])
def test_gradients_equal_plain_bptt_for_every_mode_and_budget(make):
    step, state0, inputs, params = make()
    ref_loss, ref_grads, ref_out, ref_final, ref_calls = gradients(step, state0, inputs, params, None)
    assert ref_calls == T
    for mode, memory, alpha in PLANS:
        p = plan(T, memory, mode, alpha=alpha)
        loss, grads, outputs, final_state, calls = gradients(step, state0, inputs, params, p)
        assert calls == p.cost, (mode, memory)
        torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-10)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10, msg=f"{mode} m={memory}")
        for path, value in flatten(ref_out).items():
            assert torch.equal(flatten(outputs)[path], value)
        assert flatten(final_state).keys() == flatten(ref_final).keys()
        if "count" in final_state:  # a non-tensor state leaf passes through
            assert final_state["count"] == ref_final["count"] == T


def test_without_grad_runs_each_step_once():
    step, state0, inputs, params = make_lstm()
    counted = Counted(step)
    with torch.no_grad():
        outputs, _ = checkpointed_unroll(counted, state0, inputs, plan(T, 2, "hsm"), parameters=params)
    assert counted.calls == T and not outputs["y"].requires_grad


def test_gradients_flow_to_inputs_and_through_autograd_grad():
    step, state0, inputs, params = make_gru()
    inputs = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    results = []
    for unroll_plan in (None, plan(T, 3, "msm", alpha=2)):
        outputs, final_state = checkpointed_unroll(step, state0, inputs, unroll_plan, parameters=params)
        loss = loss_of(outputs, final_state, weights={})
        results.append(torch.autograd.grad(loss, params + list(inputs.values())))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_random_draws_are_replayed_on_recomputation():
    torch.manual_seed(3)
    cell = nn.GRUCell(3, 6).double()

    def step(state, x):
        h = cell(torch.nn.functional.dropout(x["features"], 0.5, training=True), state["h"])
        return {"h": h}, {"h": h}

    state0 = {"h": torch.zeros(B, 6, dtype=torch.float64)}
    inputs = {"features": torch.randn(T, B, 3, dtype=torch.float64)}
    plans = [plan(T, 2, "hsm"), plan(T, 4, "msm", alpha=2), plan(T, 4, "ism", alpha=2), plan(T, 5, "msm", alpha=1.5)]
    # Recomputation restarts from stored internal states too, not only from hidden states.
    assert any(
        p.actions[i].op is Op.PUSH_INTERNAL for p in plans for i in p.restored_pushes if i >= 0
    )
    results = []
    for unroll_plan in [None, *plans]:
        torch.manual_seed(123)
        outputs, _ = checkpointed_unroll(step, state0, inputs, unroll_plan, parameters=list(cell.parameters()))
        after = torch.rand(1)  # the global RNG continues as after a plain forward
        grads = torch.autograd.grad(outputs["h"].square().sum(), list(cell.parameters()))
        results.append((after, grads))
    for after, grads in results[1:]:
        assert torch.equal(after, results[0][0])
        for got, want in zip(grads, results[0][1]):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_unlisted_parameter_is_an_error():
    step, state0, inputs, params = make_lstm()
    with pytest.raises(ValueError, match="parameters"):
        checkpointed_unroll(step, state0, inputs, plan(T, 2, "hsm"), parameters=params[:2])


def test_module_step_fn_parameters_are_found():
    torch.manual_seed(4)

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.GRUCell(3, 6).double()

        def forward(self, state, x):
            h = self.cell(x["features"], state["h"])
            return {"h": h}, {"h": h}

    module = Step()
    state0 = {"h": torch.zeros(B, 6, dtype=torch.float64)}
    inputs = {"features": torch.randn(T, B, 3, dtype=torch.float64)}
    grads = []
    for unroll_plan in (None, plan(T, 2, "ism", alpha=2)):
        outputs, _ = checkpointed_unroll(module, state0, inputs, unroll_plan)
        grads.append(torch.autograd.grad(outputs["h"].sum(), list(module.parameters())))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_second_backward_is_refused():
    step, state0, inputs, params = make_gru()
    outputs, _ = checkpointed_unroll(step, state0, inputs, plan(T, 2, "hsm"), parameters=params)
    loss = outputs["h2"].sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward"):
        loss.backward()


def lstm_problem(seq_len, batch, hidden):
    torch.manual_seed(5)
    cell = nn.LSTMCell(hidden, hidden)
    head = nn.Linear(hidden, 1)

    def step(state, x):
        h, c = cell(x["features"], (state["h"], state["c"]))
        return {"h": h, "c": c}, {"y": head(h)}

    state0 = {"h": torch.zeros(batch, hidden), "c": torch.zeros(batch, hidden)}
    inputs = {"features": torch.randn(seq_len, batch, hidden)}
    return step, state0, inputs, list(cell.parameters()) + list(head.parameters())


def run_metered(step, state0, inputs, params, unroll_plan):
    meter = SavedTensorMeter(exclude=list(inputs.values()) + params)
    with meter:
        outputs, final_state = checkpointed_unroll(step, state0, inputs, unroll_plan, parameters=params, meter=meter)
        outputs["y"].sum().backward()
    return meter.peak_bytes


@pytest.mark.parametrize("mode", ["hsm", "ism", "msm"])
def test_bytes_held_for_backward_stay_within_budget(mode):
    seq_len = 40
    step, state0, inputs, params = lstm_problem(seq_len, batch=4, hidden=16)
    sizes = measure_step_bytes(step, state0, {"features": inputs["features"][0]}, params)
    assert sizes.hidden_bytes == 2 * 4 * 16 * 4
    assert sizes.internal_bytes > sizes.hidden_bytes
    assert sizes.chained_internal_bytes < sizes.stored_internal_bytes <= sizes.internal_bytes + sizes.hidden_bytes
    full = run_metered(step, state0, inputs, params, None)
    # Plain BPTT is one standalone step followed by a chain of steps (the parts of the final
    # state nothing saves are not held).
    chain = sizes.stored_internal_bytes + (seq_len - 1) * sizes.chained_internal_bytes
    assert chain - sizes.hidden_bytes <= full <= chain
    minimum = 2 * sizes.hidden_bytes + sizes.internal_bytes
    conservative = StepBytes(sizes.hidden_bytes, sizes.internal_bytes)  # no chaining discount
    for budget in (minimum, minimum + 3 * sizes.hidden_bytes, full // 5, full // 3, full // 2):
        for step_bytes in (sizes, conservative):
            unroll_plan = plan_within_budget(mode, seq_len, budget, step_bytes)
            peak = run_metered(step, state0, inputs, params, unroll_plan)
            assert peak <= budget, (mode, budget, peak, str(unroll_plan))
            if mode == "hsm":  # tight: the meter sees the checkpoints the plan stores
                assert peak >= unroll_plan.peak_bytes - 2 * sizes.hidden_bytes
        if mode != "hsm" and budget >= full // 3:  # chained sizes buy recomputation
            assert plan_within_budget(mode, seq_len, budget, sizes).cost < plan_within_budget(mode, seq_len, budget, conservative).cost
    with pytest.raises(BudgetTooSmallError, match=str(minimum)):
        plan_for_budget(seq_len, minimum - 1, sizes.hidden_bytes, sizes.internal_bytes, mode=mode)


def test_meter_counts_shared_storage_once():
    weight = torch.randn(8, 8, requires_grad=True)
    x = torch.randn(8, 8)
    with SavedTensorMeter(exclude=[x, weight]) as meter:
        y = x @ weight  # saves x and weight: both excluded
        z = (y * y).sum()  # saves y twice: one storage
    assert meter.live_bytes == y.numel() * 4
    del z
    assert meter.live_bytes == 0


def test_plan_within_budget_takes_the_fixed_part_off_and_refuses_what_it_cannot_plan():
    sizes = StepBytes(hidden_bytes=1000, internal_bytes=3000)
    assert plan_within_budget("msm", 50, 40_000, sizes).cost == plan_for_budget(50, 40_000, 1000, 3000, "msm").cost
    fixed = StepBytes(hidden_bytes=1000, internal_bytes=3000, fixed_bytes=10_000)
    assert plan_within_budget("msm", 50, 50_000, fixed).cost == plan_for_budget(50, 40_000, 1000, 3000, "msm").cost
    with pytest.raises(BudgetTooSmallError, match="held whatever the plan"):
        plan_within_budget("msm", 50, 12_000, fixed)
    for mode in ("fast", "full"):  # plain BPTT has no plan: PlainUnroll
        with pytest.raises(ValueError, match="hsm, ism, msm"):
            plan_within_budget(mode, 50, 40_000, sizes)
    with pytest.raises(TypeError, match="parse_bytes"):
        plan_within_budget("msm", 50, "40kB", sizes)


def test_chained_internal_states_backpropagate_in_one_call(monkeypatch):
    """With room for every internal state the plan is plain BPTT, one chain: one
    autograd.grad call for the whole unroll, with plain BPTT's gradients. Chained plans
    (here with chained_alpha < alpha) keep exact gradients too."""
    step, state0, inputs, params = make_lstm()
    ref_loss, ref_grads, *_ = gradients(step, state0, inputs, params, None)
    calls = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(executor.torch.autograd, "grad", lambda *a, **k: calls.append(1) or real_grad(*a, **k))
    whole = plan(T, 1 + (T - 1) * 3, "ism", alpha=3)
    assert whole.cost == T
    _, grads, *_ = gradients(step, state0, inputs, params, whole)
    assert len(calls) == 1
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    for memory in (6, 10, 16):
        calls.clear()
        chained = plan(T, memory, "msm", alpha=3, chained_alpha=2)
        _, grads, *_, step_calls = gradients(step, state0, inputs, params, chained)
        assert step_calls == chained.cost and len(calls) < T
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10, msg=f"m={memory}")


def test_parameter_hooks_see_the_total_gradient_once():
    """A hook on a parameter (``Tensor.register_hook``) runs once, on the unroll's total
    gradient, as in plain BPTT: the executor's inner engine calls see parts of it."""
    step, state0, inputs, params = make_gru()
    weight, calls = params[1], []
    handle = weight.register_hook(lambda grad: calls.append(1) or grad * 2)
    try:
        _, ref_grads, *_ = gradients(step, state0, inputs, params, None)
        assert len(calls) == 1
        calls.clear()
        _, grads, *_ = gradients(step, state0, inputs, params, plan(T, 3, "msm", alpha=2))
        assert len(calls) == 1
    finally:
        handle.remove()
    assert not weight._backward_hooks  # the pause left the handle valid
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_parameter_gradients_are_summed_in_place_across_engine_calls():
    """The running parameter-gradient sums enter each engine call after the first as a
    root, so the engine adds into them in place. An LSTM weight's contributions are
    transposed views; without the seed each multi-step call summed them into a fresh
    tensor (4 here). Counted with the profiler: a dispatch mode would hold references and
    stop the engine from adding in place. Gradients stay those of plain BPTT."""
    step, state0, inputs, params = make_lstm()
    shape = list(params[1].shape)  # weight_hh
    _, ref_grads, *_ = gradients(step, state0, inputs, params, None)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        _, grads, *_ = gradients(step, state0, inputs, params, plan(T, 6, "msm", alpha=3, chained_alpha=2))
    events = prof.key_averages(group_by_input_shape=True)
    fresh = sum(e.count for e in events if e.key == "aten::add" and e.input_shapes[:2] == [shape, shape])
    in_place = sum(e.count for e in events if e.key == "aten::add_" and e.input_shapes[:2] == [shape, shape])
    assert fresh == 0 and in_place >= T - 1, (fresh, in_place)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_a_bare_tensor_state_input_and_output_work_as_dicts_do():
    """What a user would write first: a tensor state, a tensor input and a tensor output per
    step. Gradients equal the same step written with dicts, under a checkpointed plan."""
    torch.manual_seed(3)
    cell = nn.RNNCell(4, 6).double()
    features = torch.randn(T, B, 4, dtype=torch.float64)

    def tensor_step(h, x):
        h = cell(x, h)
        return h, h.sum(-1)

    def dict_step(state, x):
        h = cell(x["x"], state["h"])
        return {"h": h}, {"y": h.sum(-1)}

    p = plan(T, 3, "msm", alpha=2)
    h0 = torch.zeros(B, 6, dtype=torch.float64)
    outputs, final = checkpointed_unroll(tensor_step, h0, features, p, parameters=list(cell.parameters()))
    assert isinstance(outputs, torch.Tensor) and outputs.shape == (T, B)
    (outputs.square().sum() + final.sum()).backward()
    tensor_grads = [q.grad.clone() for q in cell.parameters()]
    cell.zero_grad()
    reference, ref_final = checkpointed_unroll(dict_step, {"h": h0}, {"x": features}, None)
    (reference["y"].square().sum() + ref_final["h"].sum()).backward()
    for got, want in zip(tensor_grads, [q.grad for q in cell.parameters()]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_a_tuple_state_is_refused_with_what_to_pass_instead():
    cell = nn.RNNCell(4, 6)

    def step(h, x):
        h = cell(x, h)
        return (h, h), h  # an LSTM's (h, c) habit

    with pytest.raises(TypeError, match=r"step_fn's new state must be a tensor or a \(nested\) dict.*tuple"):
        checkpointed_unroll(step, torch.zeros(B, 6), torch.randn(T, B, 4), plan(T, 3, "msm", alpha=2),
                            parameters=list(cell.parameters()))
