"""SAM and SDNC under checkpointed BPTT (learners/bptt/ with the undo log as a journal).

The reference is plain BPTT through the same core: autograd over a Python loop, with the
undo log reverting the in-place memory in its own backward (itself checked against a
cloning reference in test_sam.py). Float64 gradients must agree to 1e-10 for every mode
and several budgets, with episode resets inside the unroll, for both LRU implementations
and for the approximate (HNSW) index; the in-place tables must be back at their start."""

from __future__ import annotations

import pytest
import torch

from agents.sam import SAMCore
from agents.sam.sdnc_core import SDNCCore
from agents.sam.undo_log import UndoLog, open_log
from learners.bptt.executor import checkpointed_unroll
from learners.bptt.meter import measure_step_bytes
from learners.bptt_plan import minimum_budget_bytes, plan

T, B, F_IN = 12, 2, 5
PLANS = [("hsm", 1, None), ("hsm", 3, None), ("ism", 4, 2), ("msm", 2, 2), ("msm", 5, 3), ("msm", 4 * T, 3)]


class Step:
    """``step_fn`` over a memory core: reset where ``first``, then one core step."""

    def __init__(self, core):
        self.core, self.calls = core, 0

    def __call__(self, state, x):
        self.calls += 1
        state = self.core.reset_where(state, x["first"])
        out, new_state = self.core(x["features"], state)
        return new_state, {"y": out.features}


def make_core(kind: str, **options):
    torch.manual_seed(3)
    cls = SDNCCore if kind == "sdnc" else SAMCore
    options = {"hidden_size": 6, "memory_slots": 16, "word_size": 4, "num_heads": 2, "top_k": 3, "index": "exact", **options}
    return cls(F_IN, **options).double()


def problem(core, seed: int = 0, steps: int = T, device: str = "cpu"):
    """A warmed-up state (memory, usage and links in use) and inputs with resets."""
    generator = torch.Generator().manual_seed(seed)
    state = core.initial_state(B, device=torch.device(device))
    with torch.no_grad():
        for _ in range(6):
            features = torch.randn(B, F_IN, dtype=torch.float64, generator=generator).to(device)
            _, state = core(features, state)
    first = torch.zeros(steps, B, dtype=torch.bool)
    first[5, 0] = first[9, 1] = True
    first[10:] = torch.rand(steps - 10, B, generator=generator) < 0.1
    features = torch.randn(steps, B, F_IN, dtype=torch.float64, generator=generator)
    return state, {"features": features.to(device), "first": first.to(device)}


def snapshot(state):
    return {k: v.detach().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}


def restored(core, saved):
    """A fresh copy of a saved state (its own tables: no open log, and the heap and the
    index are built from its rows on first use)."""
    return {k: v.clone() for k, v in saved.items()}


def run(core, saved, inputs, unroll_plan):
    """Loss, gradients (parameters, then the float state leaves that take one), outputs,
    calls and the start state's tables after the backward pass."""
    state0 = restored(core, saved)
    for name in ("hidden", "cell", "read_words", "read_weights"):
        state0[name].requires_grad_()
    step = Step(core)
    journal = core.open_journal(state0) if unroll_plan is not None else None
    outputs, final = checkpointed_unroll(step, state0, inputs, unroll_plan, parameters=list(core.parameters()), journal=journal)
    weights = torch.randn(outputs["y"].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    weights = weights.to(outputs["y"].device)
    loss = (weights * outputs["y"]).sum() + final["hidden"].sum() + (final["read_words"] ** 2).sum()
    params = list(core.parameters())
    leaves = [state0[name] for name in ("hidden", "cell", "read_words", "read_weights")]
    grads = torch.autograd.grad(loss, params + leaves, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, params + leaves)]
    return loss.detach(), grads, outputs["y"].detach(), step.calls, state0


def assert_checkpointed_equals_plain(core, saved, inputs, plans):
    """Each plan's unroll gives plain BPTT's outputs and gradients (to 1e-10), calls the
    step ``Plan.cost`` times and leaves every in-place table as it was."""
    steps = inputs["features"].shape[0]
    ref_loss, ref_grads, ref_y, ref_calls, ref_state0 = run(core, saved, inputs, None)
    assert ref_calls == steps
    assert torch.equal(ref_state0["memory"], saved["memory"])  # plain BPTT's backward restores it
    for mode, memory, alpha in plans:
        unroll_plan = plan(steps, memory, mode, alpha=alpha)
        loss, grads, y, calls, state0 = run(core, saved, inputs, unroll_plan)
        assert calls == unroll_plan.cost, (mode, memory)
        assert torch.equal(y, ref_y)
        torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-10)
        for got, want in zip(grads, ref_grads):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10, msg=f"{mode} m={memory}")
        for name in core.row_tables:
            assert torch.equal(state0[name], saved[name]), (mode, memory, name)
        assert open_log(state0["memory"]) is None  # the journal was closed


CASES = [
    ("sam", {"lru": "argmin"}),
    ("sam", {"lru": "heap"}),
    ("sdnc", {"lru": "argmin"}),
    ("sdnc", {"lru": "heap"}),
    ("sdnc", {"lru": "argmin", "time_code": 4}),
]


@pytest.mark.parametrize("kind,options", CASES, ids=["sam", "sam-heap", "sdnc", "sdnc-heap", "sdnc-step-code"])
def test_gradients_equal_plain_bptt_for_every_mode_and_budget(kind, options):
    core = make_core(kind, **options)
    state, inputs = problem(core)
    assert_checkpointed_equals_plain(core, snapshot(state), inputs, PLANS)


def test_long_unroll_with_many_recomputed_segments():
    """T = 60 at two or three slots: the gradient buffer grows segment by segment."""
    core = make_core("sdnc", lru="heap", memory_slots=40)
    state, inputs = problem(core, seed=2, steps=60)
    assert inputs["first"][10:].sum() > 3
    for mode, memory, alpha in [("hsm", 2, None), ("msm", 3, 2)]:
        assert plan(60, memory, mode, alpha=alpha).cost > 3 * 60
    assert_checkpointed_equals_plain(core, snapshot(state), inputs, [("hsm", 2, None), ("msm", 3, 2)])


def test_approximate_index_replays_its_choices_on_recomputation():
    """HNSW answers depend on the index's history, which rewinding does not restore; the
    journal replays the forward pass's top-K rows, so gradients still equal plain BPTT."""
    pytest.importorskip("faiss")
    core = make_core("sam", index="faiss", index_options={"rebuild_every": 5}, memory_slots=64)
    state, inputs = problem(core, seed=1, steps=30)  # long enough for HNSW to answer differently
    assert_checkpointed_equals_plain(core, snapshot(state), inputs, [("hsm", 2, None), ("msm", 3, 2)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["sam", "sdnc"])
def test_gradients_equal_plain_bptt_on_cuda(kind):
    """The journal's index_select / index_copy_ and the argmin LRU on the GPU."""
    core = make_core(kind, lru="argmin").cuda()
    state, inputs = problem(core, device="cuda")
    assert_checkpointed_equals_plain(core, snapshot(state), inputs, [("hsm", 2, None), ("msm", 3, 2)])


def test_journal_rewinds_a_no_grad_run_exactly():
    core = make_core("sdnc", lru="heap")
    state, inputs = problem(core)
    saved = snapshot(state)
    journal = core.open_journal(state)
    marks, tables = [], []
    with torch.no_grad():
        step = Step(core)
        for t in range(T):
            marks.append(journal.mark())
            tables.append(snapshot(state))
            state, _ = step(state, {"features": inputs["features"][t], "first": inputs["first"][t]})
    for t in reversed(range(T)):
        journal.rewind(marks[t])
        for name in core.row_tables:
            assert torch.equal(state[name], tables[t][name]), (t, name)
        # the LRU heap agrees with the rewound usage
        heap_rows = core._least_used(state["usage"])
        torch.testing.assert_close(heap_rows, torch.topk(
            state["usage"] * core.memory_slots + torch.arange(core.memory_slots), core.num_heads, largest=False
        ).indices)
    with pytest.raises(RuntimeError, match="forward"):
        journal.rewind(marks[3] + 1)
    journal.close()
    assert open_log(state["memory"]) is None
    for name in core.row_tables:
        assert torch.equal(state[name], saved[name])


def test_in_place_tables_are_not_hidden_state_bytes():
    core = make_core("sam", memory_slots=4096)
    state, inputs = problem(core)
    journal = core.open_journal(state)
    mark = journal.mark()
    step = Step(core)
    x0 = {"features": inputs["features"][0], "first": inputs["first"][0]}
    sizes = measure_step_bytes(step, state, x0, list(core.parameters()), in_place=journal.tables)
    journal.rewind(mark)
    controller = 2 * B * core.hidden_size + B * core.num_heads * (core.word_size + core.top_k) + B
    assert sizes.hidden_bytes == controller * 8  # h, c, r, w^R and the token: no memory
    assert sizes.internal_bytes < state["memory"].numel() * 8 // 10
    journal.close()


def test_in_place_state_without_a_journal_is_refused():
    core = make_core("sam")
    state, inputs = problem(core)
    with pytest.raises(ValueError, match="memory in place.*journal"):
        checkpointed_unroll(Step(core), state, inputs, plan(T, 3, "hsm"), parameters=list(core.parameters()))


def test_erasing_rows_zeroes_only_their_own_gradient_slots():
    """Rows a reset clears without having been read or written in the unroll have no slot
    in the sparse ∂L/∂M buffer; zeroing them must leave every other slot alone."""
    memory = torch.zeros(2, 8, 3, dtype=torch.float64)
    log = UndoLog(memory)
    log.record_read(torch.tensor([2, 5, 9]))
    log.compact(torch.tensor([2]))  # builds the buffer over rows 2, 5, 9
    log.grad.fill_(1.0)
    log.zero_gradient(torch.tensor([5, 7, 15]))  # 7 and 15 have no slot
    torch.testing.assert_close(log.grad[:, 0], torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert log.keys.tolist() == [2, 5, 9]


@pytest.mark.parametrize("kind", ["sam", "sdnc"])
def test_journal_stays_within_its_bound_from_the_rows_in_use(kind):
    """A reset at the first step clears every row in use at the start, untouched by the
    unroll: only the reserve for those rows covers its entries (a bound without it fails). Over a checkpointed unroll
    with backward, the journal's peak (its entries, replayed choices and gradient buffer)
    stays within ``bound_bytes`` for the rows in use, with the per-step rates taken from the
    largest step without a reset."""
    steps = 2
    core = make_core(kind, memory_slots=64)
    generator = torch.Generator().manual_seed(4)
    state = core.initial_state(B)
    with torch.no_grad():
        for _ in range({"sam": 20, "sdnc": 12}[kind]):  # most rows in use, not all
            _, state = core(torch.randn(B, F_IN, dtype=torch.float64, generator=generator), state)
    saved = snapshot(state)
    first = torch.zeros(steps, B, dtype=torch.bool)
    first[0] = True
    inputs = {"features": torch.randn(steps, B, F_IN, dtype=torch.float64, generator=generator), "first": first}

    rates = []  # (bytes, rows) the journal logs for each step, its reset excluded
    state = restored(core, saved)
    journal = core.open_journal(state)
    in_use = int(core._used_rows(state).sum())
    assert journal.rows_in_use == in_use and 0 < in_use < B * 64
    with torch.no_grad():
        for t in range(steps):
            state = core.reset_where(state, first[t])
            before = (journal.stored_bytes(), journal.rows_touched)
            _, state = core(inputs["features"][t], state)
            rates.append((journal.stored_bytes() - before[0], journal.rows_touched - before[1]))
    journal.close()
    logged, rows = max(r[0] for r in rates), max(r[1] for r in rates)

    state0 = restored(core, saved)
    journal = core.open_journal(state0)
    bound = journal.bound_bytes(steps, logged, rows)
    outputs, _ = checkpointed_unroll(
        Step(core), state0, inputs, plan(steps, 2, "msm", alpha=2), parameters=list(core.parameters()), journal=journal
    )
    outputs["y"].sum().backward()
    assert journal.table_bytes + journal.peak_bytes <= bound


def warmed_state(core, steps: int, seed: int = 5):
    generator = torch.Generator().manual_seed(seed)
    state = core.initial_state(B)
    with torch.no_grad():
        for _ in range(steps):
            _, state = core(torch.randn(B, F_IN, dtype=torch.float64, generator=generator), state)
    return snapshot(state)


def test_budgeted_unroll_reserves_the_rows_in_use_and_replans_as_they_grow(caplog):
    """The fixed part reserves the rows in use at the start, rounded up to a sixteenth of the
    memory; a fuller memory gets a larger reserve and a plan of its own, and a budget that
    cannot hold a full memory is reported at the first unroll and fails, naming the budget
    it needs, once the rows in use outgrow it."""
    from learners.bptt_plan import BudgetTooSmallError
    from learners.bptt.unroll import BudgetedUnroll

    core = make_core("sam", memory_slots=64)  # 128 rows: reserves grow in steps of 8
    sparse, dense = warmed_state(core, 2), warmed_state(core, 20)
    _, inputs = problem(core, steps=12)
    reset_row = (8 + 4 * 8) + (8 + 8)  # a memory row and a usage row, with their indices

    def unroll_from(unroll, saved):
        state0 = restored(core, saved)
        outputs, _ = unroll(Step(core), state0, inputs)
        outputs["y"].sum().backward()
        return unroll.journal.rows_in_use, unroll.fixed_bytes

    roomy = BudgetedUnroll("msm", 2**20, list(core.parameters()), open_journal=core.open_journal)
    (few, fixed_sparse), (many, fixed_dense), (_, fixed_again) = (
        unroll_from(roomy, saved) for saved in (sparse, dense, sparse)
    )
    assert 0 < few < 32 < 64 < many < 128
    assert fixed_dense - fixed_sparse == (-(-many // 8) - -(-few // 8)) * 8 * reset_row
    assert fixed_again == fixed_sparse and len(roomy._plans) == 2

    least_plan = minimum_budget_bytes(roomy._sizes[12].hidden_bytes, roomy._sizes[12].internal_bytes)
    tight = BudgetedUnroll(
        "msm", fixed_sparse + least_plan + 100, list(core.parameters()), open_journal=core.open_journal
    )
    with caplog.at_level("WARNING", logger="engram.bptt"):
        unroll_from(tight, sparse)
    assert "a full memory (128 rows) needs at least" in caplog.text
    with pytest.raises(BudgetTooSmallError, match="raise the budget to at least"):
        unroll_from(tight, dense)
