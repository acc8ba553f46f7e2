"""SAMCore: an LSTM controller with Sparse Access Memory (Rae et al. 2016, arXiv 1610.09027).

Per step t (§3, Fig. 1):

    h_t       = LSTM([x_t, r_{t−1}])                    controller, r_{t−1} = [B, H·W]
    q, β, a, α, γ = interface(h_t)                       per head (interface([h_t, φ(t)])
                                                         with a step code, step_code.py)
    I^U_t     = the H least recently used rows (U(2))    usage.py
    M_t       = (1 − R_t) ⊙ M_{t−1} + w^W_t a_t^T       sparse_write.py, in place, eq. 4–5
    s_t       = top-K rows of D(q_t, M_t)                index.py
    r_t       = Σ_k w^R_t(s_k) M_t(s_k)                  sparse_read.py, eq. 1–2
    y_t       = Linear([h_t, r_t])

State (batch first): ``hidden``/``cell`` ``[B, C]``, ``read_words`` ``[B, H, W]`` r_{t−1},
``read_weights`` ``[B, H, K]`` w^R_{t−1}, ``read_indices`` ``[B, H, K]`` s_{t−1},
``memory`` ``[B, N, W]`` M (mutated in place!), ``usage`` ``[B, N]`` int64 last-access
stamps (mutated in place), ``time`` ``[B]`` int64 steps since the reset, ``token`` ``[B]``
the autograd chain token of :mod:`agents.sam.undo_log`.

Because ``memory`` and ``usage`` are updated in place, a state dict is a *handle*, not a
snapshot: the state returned by a step shares those two tensors with the state passed in.
Use :meth:`SparseMemoryCore.pack_state` (or ``clone``) to keep a snapshot. After
``backward()`` of a recorded unroll the memory is back at its value at the unroll start.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from agents.core import CoreOutput, RecurrentCore, State
from agents.sam import usage as usage_lib
from agents.sam.index import make_index
from agents.sam.sparse_read import sparse_read
from agents.sam.sparse_write import sparse_write, write_weights
from agents.sam.step_code import step_code
from agents.sam.undo_log import SparseWrite, UndoLog, open_log, start_token, undo_log_for


def rows_in_use(in_use: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """Flat indices ``b·N + i`` ``[P]`` of the rows with ``in_use`` ``[B, N]`` set, over
    ``sequences`` ``[R]``: what a reset must log before it clears a table."""
    chosen = torch.zeros_like(in_use)
    chosen[sequences] = in_use[sequences]
    return torch.nonzero(chosen.reshape(-1)).view(-1)


def oneplus(x: torch.Tensor) -> torch.Tensor:
    """1 + softplus(x) ∈ [1, ∞): the key strength β as in the DNC."""
    return 1.0 + F.softplus(x)


class SparseMemoryCore(RecurrentCore):
    """Shared machinery of :class:`SAMCore` and :class:`agents.sam.sdnc_core.SDNCCore`.

    Args:
        input_size: F, the size of ``features`` ``[B, F]``.
        hidden_size: C, the LSTM controller's size (the paper's benchmarks use 100; no default here:
            `agent.memory.hidden_size` owns it, 256).
        memory_slots: N, rows of memory per sequence (no default here: `agent.memory.memory_slots`,
            4,096).
        word_size: W, the width of a row (paper: 32; the config's default too).
        num_heads: H, read/write heads (paper: 4).
        top_k: K, rows per sparse read (paper: 4 or 8; the config: 4).
        index: ``"exact"`` (batched matmul + topk) or ``"faiss"`` (HNSW + exact delta).
        index_options: keyword options of :class:`agents.sam.index.FaissIndex`.
        output_size: size of ``CoreOutput.features``; defaults to ``hidden_size``.
        usage_threshold: δ of U(2).
        lru: ``"argmin"`` (O(N) vectorised), ``"heap"`` (O(log N), CPU) or ``"auto"``
            (heap when N > 8192 and on CPU).
        time_code: size of the step code φ(t) the interface also reads (0: none, the paper's
            SAM); it lets reads address rows by how long ago they were written.
    """

    extra_interface = 0  # per head, for subclasses (SDNC's read modes)
    # ``[B, N, ...]`` tensors updated in place and packed by rows
    row_tables: tuple[str, ...] = ("memory", "usage")

    def __init__(
        self,
        input_size: int,
        *,
        hidden_size: int,
        memory_slots: int,
        word_size: int,
        num_heads: int,
        top_k: int,
        index: str,
        index_options: dict | None = None,
        output_size: int | None = None,
        usage_threshold: float = usage_lib.DEFAULT_THRESHOLD,
        lru: str = "auto",
        time_code: int = 0,
    ):
        super().__init__()
        if top_k > memory_slots:
            raise ValueError(f"top_k ({top_k}) must be <= memory_slots ({memory_slots})")
        if num_heads > memory_slots:
            raise ValueError(f"num_heads ({num_heads}) must be <= memory_slots ({memory_slots})")
        if lru not in ("auto", "argmin", "heap"):
            raise ValueError(f"lru must be 'auto', 'argmin' or 'heap', got {lru!r}")
        self.hidden_size = hidden_size
        self.memory_slots = memory_slots
        self.word_size = word_size
        self.num_heads = num_heads
        self.top_k = top_k
        self.usage_threshold = usage_threshold
        self.lru = lru
        if time_code < 0 or time_code % 2:
            raise ValueError(f"time_code must be 0 or a positive even number, got {time_code}")
        self.time_code = time_code
        self.index = make_index(index, **(index_options or {}))
        self.lru_heaps = usage_lib.LRUHeaps()  # of each usage tensor the heap serves
        self.output_size = output_size or hidden_size
        read_size = num_heads * word_size
        self.controller = nn.LSTMCell(input_size + read_size, hidden_size)
        # per head: query q (W), strength β (1), add a (W), write gate α (1), gate γ (1)
        self.per_head = 2 * word_size + 3 + self.extra_interface
        self.interface = nn.Linear(hidden_size + time_code, num_heads * self.per_head)
        self.output = nn.Linear(hidden_size + read_size, self.output_size)

    # -- state ----------------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | None = None) -> State:
        state = self._fresh_state(batch_size, device)
        # The memory is known to be empty: start its side structures empty (no O(N) scans).
        if self._use_heap(state["usage"]):
            self.lru_heaps.start_empty(state["usage"])
        self.index.start_empty(state["memory"])
        return state

    def _fresh_state(self, batch_size: int, device: torch.device | None) -> State:
        """New state tensors, with no side structures (the LRU heap, the index) for them."""
        B, H, K, W, N = batch_size, self.num_heads, self.top_k, self.word_size, self.memory_slots
        floats = {"device": device, "dtype": self.interface.weight.dtype}
        zeros = torch.zeros(B, self.hidden_size, **floats)
        state = {
            "hidden": zeros,
            "cell": zeros.clone(),
            "read_words": torch.zeros(B, H, W, **floats),
            "read_weights": torch.zeros(B, H, K, **floats),
            "read_indices": torch.arange(K, device=device).repeat(B, H, 1),
            "memory": torch.zeros(B, N, W, **floats),
            "usage": torch.zeros(B, N, dtype=torch.int64, device=device),
            "time": torch.zeros(B, dtype=torch.int64, device=device),
            "token": torch.zeros(B, **floats),
        }
        return state

    def _use_heap(self, usage: torch.Tensor) -> bool:
        if self.lru == "auto":
            return usage.device.type == "cpu" and usage.shape[1] > 8192
        return self.lru == "heap"

    def _least_used(self, usage: torch.Tensor) -> torch.Tensor:
        """I^U_t for every head: ``[B, H]`` int64."""
        if self._use_heap(usage):
            return self.lru_heaps.of(usage).least_recently_used(self.num_heads).to(usage.device)
        return usage_lib.least_recently_used(usage, self.num_heads)

    def _record(self, state: State, log, indices: torch.Tensor, weights: torch.Tensor) -> None:
        """U(2) update for accesses ``indices``/``weights`` ``[B, M]`` (logged in a journal)."""
        if log is not None and log.journal:
            log.record_rows(state["usage"], log.flat(indices).reshape(-1))
        usage_lib.record_access(state["usage"], state["time"], indices, weights, self.usage_threshold)
        if self._use_heap(state["usage"]):
            self.lru_heaps.of(state["usage"]).pushed(indices)

    def _watch(self, log, usage: torch.Tensor) -> None:
        """Keep the side structures in step with rows the log reverts (once per log)."""
        if log is None or log.on_revert:
            return
        memory = log.memory

        def reverted(table, flat_rows):
            if table is memory:
                self.index.reverted(memory, flat_rows)
            elif table is usage and self._use_heap(usage):
                self.lru_heaps.of(usage).restored(flat_rows)

        log.on_revert.append(reverted)

    def _search(self, memory, log, query: torch.Tensor, k: int) -> torch.Tensor:
        """s_t, the top-``k`` rows; a journal replays a recomputed step's first answer."""
        if log is None:
            return self.index.search(memory, query, k)
        return log.replay(lambda: self.index.search(memory, query, k))

    # -- one step -------------------------------------------------------------------------
    def _split_interface(self, hidden: torch.Tensor, time: torch.Tensor) -> dict[str, torch.Tensor]:
        B, H, W = hidden.shape[0], self.num_heads, self.word_size
        if self.time_code:
            hidden = torch.cat([hidden, step_code(time, self.time_code, dtype=hidden.dtype)], dim=1)
        flat = self.interface(hidden).view(B, H, self.per_head)
        query, strength, add, gates, extra = torch.split(
            flat, [W, 1, W, 2, self.extra_interface], dim=-1
        )
        return {
            "query": query,  # q_t [B, H, W]
            "strength": oneplus(strength.squeeze(-1)),  # β_t [B, H]
            "add": add,  # a_t [B, H, W]
            "write_gate": torch.sigmoid(gates[..., 0]),  # α_t [B, H]
            "interpolation_gate": torch.sigmoid(gates[..., 1]),  # γ_t [B, H]
            "extra": extra,  # [B, H, extra_interface]
        }

    def _read(self, state, memory, log, token, interface):
        """Content read; subclasses add read modes. Returns (r_t, w^R_t, s_t, token, telemetry)."""
        indices = self._search(memory, log, interface["query"], self.top_k)  # s_t
        read, weights, token = sparse_read(
            memory, log, token, interface["query"], interface["strength"], indices
        )
        return read, weights, indices, token, {}

    def forward(self, features, state, replay=None):
        B = features.shape[0]
        memory, usage = state["memory"], state["usage"]
        recording = torch.is_grad_enabled()
        log = undo_log_for(memory) if recording else open_log(memory)
        self._watch(log, usage)
        token = start_token(state["token"])
        time = state["time"] + 1
        state = dict(state, time=time)

        # controller: h_t = LSTM([x_t, r_{t−1}])
        controller_input = torch.cat([features, state["read_words"].reshape(B, -1)], dim=1)
        hidden, cell = self.controller(controller_input, (state["hidden"], state["cell"]))
        interface = self._split_interface(hidden, time)

        # write: w^W_t = α(γ w^R_{t−1} + (1 − γ) I^U_t); erase I^U_t; add (eqs. 3–5)
        least_used = self._least_used(usage)  # I^U_t [B, H]
        weights, indices = write_weights(
            state["read_weights"], state["read_indices"], least_used,
            interface["write_gate"], interface["interpolation_gate"],
        )
        token = sparse_write(memory, log, token, weights, indices, interface["add"], least_used)
        self._record(state, log, indices.reshape(B, -1), weights.reshape(B, -1))
        self.index.written(memory, indices.reshape(B, -1))
        state.update(self._after_write(state, log, weights, indices))

        # read from M_t (eqs. 1–2)
        read, read_weights, read_indices, token, read_telemetry = self._read(state, memory, log, token, interface)
        self._record(state, log, read_indices.reshape(B, -1), read_weights.reshape(B, -1))

        output = self.output(torch.cat([hidden, read.reshape(B, -1)], dim=1))  # y_t
        new_state = dict(
            state,
            hidden=hidden,
            cell=cell,
            read_words=read,
            read_weights=read_weights,
            read_indices=read_indices,
            token=token,
        )
        telemetry = {
            "read_rows": read_indices.detach(),  # [B, H, K']
            "read_weights": read_weights.detach(),  # [B, H, K']
            "write_rows": indices.detach(),  # [B, H, K+1]
            "write_weights": weights.detach(),  # [B, H, K+1]
            "least_used_age": (time[:, None] - usage.gather(1, least_used)).detach(),  # [B, H]
            **{name: value.detach() for name, value in read_telemetry.items()},
        }
        return CoreOutput(features=output, telemetry=telemetry), new_state

    def _after_write(self, state: State, log, weights: torch.Tensor, indices: torch.Tensor) -> State:
        """Hook after the write of step t (SDNC updates its links, logged in a journal);
        returns state updates."""
        return {}

    # -- episode boundaries ---------------------------------------------------------------
    def reset_where(self, state: State, first: torch.Tensor) -> State:
        """Fresh state for sequences with ``first`` ``[B]`` set; memory cleared in place.

        Only the non-zero rows of a reset sequence are erased, through the undo log when
        one is open (so a reset inside a recorded unroll is reverted in backward, and the
        gradient does not cross it).
        """
        if not bool(first.any()):
            return state
        B = first.shape[0]
        memory, usage = state["memory"], state["usage"]
        sequences = torch.nonzero(first).view(-1)
        nonzero = memory[sequences].abs().sum(-1) != 0  # [R, N]
        counts = nonzero.sum(1)
        erase = torch.zeros(B, int(counts.max()), dtype=torch.int64, device=memory.device)
        mask = torch.zeros_like(erase, dtype=torch.bool)
        for slot, b in enumerate(sequences.tolist()):
            rows = torch.nonzero(nonzero[slot]).view(-1)
            erase[b, : rows.numel()] = rows
            mask[b, : rows.numel()] = True
        log = undo_log_for(memory) if torch.is_grad_enabled() else open_log(memory)
        token = start_token(state["token"])
        empty = torch.zeros(B, self.num_heads, 0, device=memory.device, dtype=memory.dtype)
        token = SparseWrite.apply(
            token, empty, memory.new_zeros(B, self.num_heads, self.word_size),
            memory, log, empty.long(), erase, mask,
        )
        with torch.no_grad():
            if log is not None and log.journal:
                log.record_rows(usage, rows_in_use(usage != 0, sequences))
            usage[sequences] = 0
        if self._use_heap(usage):
            heap = self.lru_heaps.of(usage)
            for b in sequences.tolist():
                heap.rebuild(b)
        self.index.reset(memory, sequences)
        fresh = self._fresh_state(B, device=memory.device)
        reset: State = {}
        for name, value in state.items():
            if name in self.row_tables:
                reset[name] = value
            elif name == "token":
                reset[name] = token
            else:
                mask_b = first.view(B, *([1] * (value.dim() - 1)))
                reset[name] = torch.where(mask_b, fresh[name].to(value.dtype), value)
        return reset

    def open_journal(self, state: State) -> UndoLog:
        """A journal-mode undo log on ``state``'s memory covering every row table, for
        checkpointed BPTT: it rewinds memory, usage (and links) to any earlier step. It
        counts the rows in use now, the most a first reset of each sequence can clear."""
        tables = [state[name] for name in self.row_tables]
        log = UndoLog.open_journal(state["memory"], tables, rows_in_use=int(self._used_rows(state).sum()))
        self._watch(log, state["usage"])
        return log

    # -- wire format ----------------------------------------------------------------------
    def _used_rows(self, state: State) -> torch.Tensor:
        """``[B, N]`` bool: rows that differ from a fresh state (written or accessed)."""
        return (state["memory"].detach().abs().sum(-1) != 0) | (state["usage"] != 0)

    def pack_state(self, state: State) -> dict[str, torch.Tensor]:
        """Everything but the ``[B, N, ...]`` row tables, plus the rows in use.

        ``rows_index`` ``[B, P]`` int64 (−1 = padding) lists the rows that differ from a
        fresh state; ``rows/<table>`` ``[B, P, ...]`` holds their values in each row table
        (``memory``, ``usage``, SDNC's links). P is the largest count in the batch, so the
        message is O(rows touched since the reset), never O(N).
        """
        used = self._used_rows(state)
        counts = used.sum(1)
        B, width = used.shape[0], int(counts.max()) if counts.numel() else 0
        index = torch.full((B, width), -1, dtype=torch.int64, device=used.device)
        for b in range(B):
            rows = torch.nonzero(used[b]).view(-1)
            index[b, : rows.numel()] = rows
        safe = index.clamp(min=0)
        batch = torch.arange(B, device=used.device)[:, None]
        fresh = self._fresh_state(1, device=used.device)
        packed = {
            name: value.detach().clone()
            for name, value in state.items()
            if name not in self.row_tables and name != "token"
        }
        packed["rows_index"] = index
        for name in self.row_tables:
            rows = state[name].detach()[batch, safe]
            pad = fresh[name][0, 0].expand_as(rows)
            mask = (index >= 0).view(B, width, *([1] * (rows.dim() - 2)))
            packed[f"rows/{name}"] = torch.where(mask, rows, pad)
        return packed

    def concat_packed(self, packed_states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Join packed states along B, padding the touched-row lists to the longest P."""
        width = max(p["rows_index"].shape[1] for p in packed_states)
        joined: dict[str, torch.Tensor] = {}
        for name in packed_states[0]:
            parts = []
            for packed in packed_states:
                value = packed[name]
                if name == "rows_index" or name.startswith("rows/"):
                    missing = width - value.shape[1]
                    fill = -1 if name == "rows_index" else 0
                    pad = value.new_full((value.shape[0], missing, *value.shape[2:]), fill)
                    value = torch.cat([value, pad], 1)
                parts.append(value)
            joined[name] = torch.cat(parts, 0)
        return joined

    def unpack_state(self, packed: dict[str, torch.Tensor]) -> State:
        """Inverse of :meth:`pack_state` (exact). The row tables come back filled, so their
        LRU heap and index are built from their rows on first use, not started empty."""
        index = packed["rows_index"]
        B, device = index.shape[0], index.device
        state = self._fresh_state(B, device=device)
        valid = index >= 0
        batch = torch.arange(B, device=device)[:, None].expand_as(index)
        for name in self.row_tables:
            state[name][batch[valid], index[valid]] = packed[f"rows/{name}"][valid].to(state[name].dtype)
        for name, value in packed.items():
            if name != "rows_index" and not name.startswith("rows/"):
                state[name] = value.clone()
        return state


class SAMCore(SparseMemoryCore):
    """Sparse Access Memory core; see :class:`SparseMemoryCore` for the arguments."""
