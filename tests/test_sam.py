"""Tests of SAM (Rae et al. 2016): reads, the undo-log backward, U(2) LRU, memory cost, ANN
recall and the packed state. References are written here, independently of agents/sam."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from agents.sam import SAMCore
from agents.sam import usage as usage_lib
from agents.sam.index import ExactIndex, FaissIndex
from agents.sam.step_code import step_code
from agents.sam.undo_log import open_log

DELTA = 0.005


def _random_state(core, batch_size, generator):
    """A state whose memory and usage are random (no similarity or LRU ties)."""
    state = core.initial_state(batch_size)
    N = core.memory_slots
    with torch.no_grad():
        state["memory"].copy_(torch.randn(state["memory"].shape, generator=generator, dtype=state["memory"].dtype))
        for b in range(batch_size):
            state["usage"][b] = torch.randperm(N, generator=generator) + 1
    state["time"] = torch.full((batch_size,), N + 1, dtype=torch.int64)
    return state


def test_exact_read_with_k_equal_n_is_a_dense_softmax_read():
    torch.manual_seed(0)
    B, H, N, W = 2, 3, 12, 5
    core = SAMCore(4, hidden_size=8, memory_slots=N, word_size=W, num_heads=H, top_k=N, index="exact").double()
    memory = torch.randn(B, N, W, dtype=torch.float64)
    query = torch.randn(B, H, W, dtype=torch.float64)
    strength = 1 + torch.rand(B, H, dtype=torch.float64)
    indices = core.index.search(memory, query, N)
    from agents.sam.sparse_read import sparse_read

    read, weights, _ = sparse_read(memory, None, torch.zeros(B, dtype=torch.float64), query, strength, indices)
    # dense reference: softmax over all N rows of β·cos
    cos = torch.einsum("bhw,bnw->bhn", query, memory) / (
        query.norm(dim=-1)[..., None] * memory.norm(dim=-1)[:, None, :] + 1e-6  # ε of D
    )
    dense = torch.softmax(strength[..., None] * cos, dim=-1)
    expected = torch.einsum("bhn,bnw->bhw", dense, memory)
    torch.testing.assert_close(read, expected, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, dtype=torch.float64))


def _reference_step_code(time, size):
    """φ(t): sin and cos of t·1000^(−j/n), j < n = size / 2, interleaved (step_code.py's formula)."""
    n = size // 2
    angles = time.double()[:, None] * torch.tensor([1000.0 ** (-j / n) for j in range(n)], dtype=torch.float64)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(time), size)


def _reference_unroll(core, features, memory, usage, time, read_idx, read_w, read_words, hidden, cell):
    """Naive SAM: the memory is cloned (functional update) at every step; dense autograd.

    Returns the per-step outputs ``[T, B, O]``.
    """
    B, N, W = memory.shape
    H, K = core.num_heads, core.top_k
    usage = usage.clone()
    outputs = []
    for t in range(features.shape[0]):
        time = time + 1
        hidden, cell = core.controller(torch.cat([features[t], read_words.reshape(B, -1)], 1), (hidden, cell))
        interface_input = hidden
        if core.time_code:
            interface_input = torch.cat([hidden, _reference_step_code(time, core.time_code)], 1)
        p = F.linear(interface_input, core.interface.weight, core.interface.bias).view(B, H, -1)
        query, strength = p[..., :W], 1 + F.softplus(p[..., W])
        add, alpha, gamma = p[..., W + 1: 2 * W + 1], torch.sigmoid(p[..., 2 * W + 1]), torch.sigmoid(p[..., 2 * W + 2])
        # LRU rows: the H smallest (usage, row) pairs, by a Python sort
        lru = torch.tensor([[i for _, i in sorted((int(usage[b, i]), i) for i in range(N))[:H]] for b in range(B)])
        write = torch.zeros(B, H, N, dtype=memory.dtype)
        erase = torch.zeros(B, N, dtype=memory.dtype)
        for b in range(B):
            for h in range(H):
                write[b, h] = write[b, h].index_add(0, read_idx[b, h], alpha[b, h] * gamma[b, h] * read_w[b, h])
                write[b, h, lru[b, h]] = write[b, h, lru[b, h]] + alpha[b, h] * (1 - gamma[b, h])
                erase[b, lru[b, h]] = 1.0
        memory = memory * (1 - erase[..., None]) + torch.einsum("bhn,bhw->bnw", write, add)  # new tensor
        accessed = (write.detach() > DELTA).any(1)
        usage = torch.where(accessed, time[:, None], usage)
        cos = torch.einsum("bhw,bnw->bhn", query, memory) / (
            query.norm(dim=-1)[..., None] * memory.norm(dim=-1)[:, None, :] + 1e-6
        )
        read_idx = cos.topk(K, dim=-1).indices
        read_w = torch.softmax(strength[..., None] * cos.gather(2, read_idx), -1)
        rows = memory[torch.arange(B)[:, None, None], read_idx]
        read_words = (read_w[..., None] * rows).sum(2)
        dense_read = torch.zeros(B, H, N, dtype=memory.dtype).scatter(2, read_idx, read_w.detach())
        usage = torch.where((dense_read > DELTA).any(1), time[:, None], usage)
        outputs.append(F.linear(torch.cat([hidden, read_words.reshape(B, -1)], 1), core.output.weight, core.output.bias))
    return torch.stack(outputs)


@pytest.mark.parametrize("time_code", [0, 6], ids=["paper", "step-code"])
def test_undo_log_gradients_equal_a_naive_cloning_reference_float64(time_code):
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    T, B, F_in, N, W, H, K = 24, 2, 5, 10, 4, 2, 3
    core = SAMCore(F_in, hidden_size=7, memory_slots=N, word_size=W, num_heads=H, top_k=K, lru="argmin", index="exact",
                   time_code=time_code).double()
    features = torch.randn(T, B, F_in, dtype=torch.float64, generator=generator, requires_grad=True)
    targets = torch.randn(T, B, core.output_size, dtype=torch.float64, generator=generator)
    state = _random_state(core, B, generator)
    start = {k: v.clone() for k, v in state.items()}

    outputs = []
    for t in range(T):
        out, state = core(features[t], state)
        outputs.append(out.features)
    loss = ((torch.stack(outputs) - targets) ** 2).sum()
    params = [features] + list(core.parameters())
    grads = torch.autograd.grad(loss, params)
    assert open_log(state["memory"]) is None  # the log was fully replayed
    torch.testing.assert_close(state["memory"], start["memory"], rtol=0, atol=0)  # reverted

    ref_out = _reference_unroll(
        core, features, start["memory"], start["usage"], start["time"], start["read_indices"],
        start["read_weights"], start["read_words"], start["hidden"], start["cell"],
    )
    torch.testing.assert_close(torch.stack(outputs), ref_out, rtol=1e-10, atol=1e-10)
    ref_loss = ((ref_out - targets) ** 2).sum()
    ref_grads = torch.autograd.grad(ref_loss, params)
    for grad, ref in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref, rtol=1e-9, atol=1e-10)
    assert grads[1].abs().sum() > 0


def _rotation_back(k, size):
    """R_k with φ(t − k) = R_k φ(t): per frequency ω, the 2×2 rotation of (sin ωt, cos ωt) by −kω."""
    rotation = torch.zeros(size, size, dtype=torch.float64)
    for j in range(size // 2):
        angle = torch.tensor(k * 1000.0 ** (-j / (size // 2)), dtype=torch.float64)
        c, s = angle.cos(), angle.sin()
        rotation[2 * j: 2 * j + 2, 2 * j: 2 * j + 2] = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    return rotation


def test_the_step_code_of_an_earlier_step_is_a_fixed_rotation_of_the_code_now():
    """φ(t − k) = R_k φ(t) for every t, R_k built from k alone: what lets one linear map aim a
    query at the row written k steps back."""
    size, k = 8, 32
    time = torch.arange(k, 400)
    code_now, code_then = _reference_step_code(time, size), _reference_step_code(time - k, size)
    assert torch.allclose(step_code(time, size, dtype=torch.float64), code_now, atol=1e-12)
    rotation = _rotation_back(k, size)
    torch.testing.assert_close(code_now @ rotation.T, code_then, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="even"):
        step_code(time, 5)


def test_a_step_code_lets_a_content_read_find_the_row_written_k_steps_ago():
    """Interface weights set by hand: each write's word is φ(t), each query is φ(t − k). The
    read then lands on the row the write of step t − k chose, found from the write telemetry;
    without the code the same core has nothing to aim with."""
    code, k, steps, N = 8, 5, 40, 64
    core = SAMCore(3, hidden_size=4, memory_slots=N, word_size=code, num_heads=1, top_k=2, index="exact",
                   time_code=code).double()
    W = code
    with torch.no_grad():
        core.interface.weight.zero_()
        core.interface.bias.zero_()
        hidden = core.hidden_size
        core.interface.weight[:W, hidden:] = _rotation_back(k, code)  # q_t = φ(t − k)
        core.interface.bias[W] = 50.0  # β: a sharp read
        core.interface.weight[W + 1: 2 * W + 1, hidden:] = torch.eye(code)  # a_t = φ(t)
        core.interface.bias[2 * W + 1] = 20.0  # α ≈ 1: write every step
        core.interface.bias[2 * W + 2] = -20.0  # γ ≈ 0: into the least recently used row
    state = core.initial_state(2)
    written, read = [], []
    with torch.no_grad():
        for _ in range(steps):
            out, state = core(torch.randn(2, 3, dtype=torch.float64), state)
            weights = out.telemetry["write_weights"][:, 0]
            written.append(out.telemetry["write_rows"][:, 0].gather(1, weights.argmax(1, keepdim=True))[:, 0])
            top = out.telemetry["read_weights"][:, 0].argmax(1, keepdim=True)
            read.append(out.telemetry["read_rows"][:, 0].gather(1, top)[:, 0])
    for t in range(k, steps):
        assert torch.equal(read[t], written[t - k]), t


def test_loss_on_an_early_step_only_rewinds_the_later_writes():
    torch.manual_seed(2)
    core = SAMCore(3, hidden_size=6, memory_slots=16, word_size=4, num_heads=2, top_k=2, index="exact").double()
    state = core.initial_state(2)
    start = state["memory"].clone()
    outputs = []
    for _ in range(8):
        out, state = core(torch.randn(2, 3, dtype=torch.float64), state)
        outputs.append(out.features)
    outputs[3].sum().backward()  # steps 4..7 are not in the graph
    torch.testing.assert_close(state["memory"], start, rtol=0, atol=0)


@pytest.mark.parametrize("use_heap", [False, True])
def test_lru_row_is_the_least_recently_accessed(use_heap):
    rng = np.random.default_rng(3)
    B, N = 3, 40
    usage = torch.zeros(B, N, dtype=torch.int64)
    last = [dict() for _ in range(B)]  # reference: row -> last access time
    heap = usage_lib.LRUHeap(usage) if use_heap else None
    for t in range(1, 120):
        picked = heap.least_recently_used(2) if use_heap else usage_lib.least_recently_used(usage, 2)
        for b in range(B):
            order = sorted(range(N), key=lambda i: (last[b].get(i, 0), i))
            assert picked[b].tolist() == order[:2]
        rows = torch.from_numpy(rng.integers(0, N, size=(B, 5)))
        weights = torch.from_numpy(rng.choice([0.001, 0.5], size=(B, 5)))
        usage_lib.record_access(usage, torch.full((B,), t), rows, weights, DELTA)
        if use_heap:
            heap.pushed(rows)
        for b in range(B):
            for row, weight in zip(rows[b].tolist(), weights[b].tolist()):
                if weight > DELTA:
                    last[b][row] = t


def _stored_bytes(memory_slots):
    torch.manual_seed(4)
    core = SAMCore(6, hidden_size=10, memory_slots=memory_slots, word_size=8, num_heads=2, top_k=4, lru="heap", index="exact")
    features = torch.randn(100, 1, 6)
    state = core.initial_state(1)
    seen: dict[int, int] = {}
    inputs = {features.untyped_storage().data_ptr()}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in inputs:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        total = 0
        for t in range(100):
            out, state = core(features[t], state)
            total = total + out.features.sum()
    log_bytes = open_log(state["memory"]).stored_bytes()
    param_bytes = sum(p.numel() * p.element_size() for p in core.parameters())
    total.backward()
    return sum(seen.values()) - 0 * param_bytes + log_bytes


def test_stored_bytes_do_not_grow_with_memory_size():
    small, large = _stored_bytes(1024), _stored_bytes(65536)
    assert small == large
    assert large < 65536 * 8 * 4  # far less than one dense memory


def test_faiss_recall_after_many_incremental_writes():
    generator = torch.Generator().manual_seed(5)
    B, N, W, H, K = 2, 3000, 16, 4, 8
    memory = torch.zeros(B, N, W)
    index = FaissIndex(rebuild_every=400)
    rows_written = 0
    for step in range(400):  # incremental writes: 10 rows per sequence per step
        rows = torch.randint(0, N, (B, 10), generator=generator)
        memory[torch.arange(B)[:, None], rows] = torch.randn(B, 10, W, generator=generator)
        index.written(memory, rows)
        rows_written += 10
        if step % 50 == 0:
            index.search(memory, torch.randn(B, H, W, generator=generator), K)
    assert sum(s.rebuilds for s in index._structures[memory]) >= 2  # rebuilt, but not every step
    query = torch.randn(B, 64, W, generator=generator)
    approx = index.search(memory, query, K)
    exact = ExactIndex().search(memory, query, K)
    hits = sum(
        len(set(approx[b, h].tolist()) & set(exact[b, h].tolist()))
        for b in range(B) for h in range(query.shape[1])
    )
    recall = hits / exact.numel()
    assert recall >= 0.9, recall


def test_packed_state_round_trips_exactly_and_is_sparse():
    torch.manual_seed(6)
    core = SAMCore(3, hidden_size=6, memory_slots=5000, word_size=4, num_heads=2, top_k=2, index="exact")
    state = core.initial_state(3)
    with torch.no_grad():
        for t in range(15):
            done = torch.tensor([t == 9, False, False])
            state = core.reset_where(state, done)
            _, state = core(torch.randn(3, 3), state)
    packed = core.pack_state(state)
    assert "memory" not in packed and packed["rows/memory"].shape[1] < 200
    assert packed["rows/memory"].numel() < state["memory"].numel() / 20
    unpacked = core.unpack_state(packed)
    assert set(unpacked) == set(state)
    for name in state:
        torch.testing.assert_close(unpacked[name], state[name], rtol=0, atol=0)
    # the reset sequence only carries the rows written after its reset
    assert (packed["rows_index"][0] >= 0).sum() < (packed["rows_index"][1] >= 0).sum()


def test_reset_inside_a_recorded_unroll_blocks_gradient_and_is_reverted():
    torch.manual_seed(7)
    core = SAMCore(3, hidden_size=6, memory_slots=32, word_size=4, num_heads=2, top_k=2, index="exact").double()
    state = core.initial_state(2)
    start = state["memory"].clone()
    x = torch.randn(10, 2, 3, dtype=torch.float64, requires_grad=True)
    outs = []
    for t in range(10):
        state = core.reset_where(state, torch.tensor([t == 5, False]))
        out, state = core(x[t], state)
        outs.append(out.features)
    torch.stack(outs)[6:, 0].sum().backward()
    assert x.grad[:5, 0].abs().sum() == 0  # nothing crosses the reset of sequence 0
    assert x.grad[5:, 0].abs().sum() > 0
    assert x.grad[:, 1].abs().sum() == 0
    torch.testing.assert_close(state["memory"], start, rtol=0, atol=0)


@pytest.mark.parametrize("options", [{"lru": "heap"}, {"index": "faiss"}], ids=["lru-heap", "faiss"])
def test_an_unpacked_state_steps_as_the_state_it_was_packed_from(options):
    """The learner unpacks the actor's state: its LRU heap and index must see the rows the
    state holds (started empty, the heap ran dry on a full memory and the index missed
    every row written before the unroll)."""
    torch.manual_seed(6)
    core = SAMCore(3, hidden_size=8, memory_slots=48, word_size=4, num_heads=2, top_k=2, **{"index": "exact", **options})
    state = core.initial_state(2)
    with torch.no_grad():
        for _ in range(60):  # every row written at least once
            _, state = core(torch.randn(2, 3), state)
        assert bool((state["usage"] != 0).all())
        unpacked = core.unpack_state(core.pack_state(state))
        for _ in range(5):
            features = torch.randn(2, 3)
            out, state = core(features, state)
            out_unpacked, unpacked = core(features, unpacked)
            torch.testing.assert_close(out_unpacked.features, out.features, rtol=0, atol=0)
            assert torch.equal(unpacked["read_indices"], state["read_indices"])
