"""In-place sparse memory writes with an undo log: SAM's efficient BPTT.

Rae et al. 2016 (arXiv 1610.09027), §3.4 and Supplementary A: "the sparse modifications
to memory are stored, and in the backward pass the memory is restored step by step", so
backpropagation through T steps stores O(T·K·W) numbers plus one O(N·W) memory instead of
the T copies of M ∈ R^{N×W} that a functional (out-of-place) write would keep.

How the pieces fit:

- The memory ``M`` ``[B, N, W]`` lives in the core state and is *mutated in place*; it
  never enters autograd. An :class:`UndoLog` is registered for the memory tensor
  (:data:`OPEN_LOGS`) for the duration of one recorded unroll. Every write appends one entry: the flat row indices it
  touches and those rows' old values (``O(K·W)`` per head).
- :class:`SparseWrite` (M_t = (1 − R_t) ⊙ M_{t−1} + w^W_t a_t^T, eq. 4 with R_t the
  erase of the LRU rows) and :class:`SparseGather` (the K rows a read uses, from M_t) are
  autograd Functions. Their differentiable link to each other is a scalar-per-sequence
  *token* ``[B]`` (always zero), threaded write → gather → next write, which orders the
  backward pass exactly in reverse time.
- In backward, ∂L/∂M is kept *sparse*: a compact buffer ``[U, W]`` over the U distinct
  (sequence, row) pairs the unroll touched (found at the first backward call, with
  ``unique`` over the rows recorded). A gather adds its rows' gradient into it; a write reads
  ∂L/∂M_t at its rows to produce ∂L/∂w^W and ∂L/∂a, zeroes the erased rows (∂M_{t−1} = 0
  there) and then reverts its entry, so that after the whole backward the memory holds
  its value at the start of the unroll again and the log is detached.
- Steps after the last one that reaches the loss are never visited by autograd; a
  backward call first reverts every later entry (:meth:`UndoLog.rewind_to`).
- *Journal mode* (:meth:`UndoLog.open_journal`, for checkpointed BPTT in
  ``learners/bptt/executor.py``): the log also records writes made without grad and the old rows of
  the other tables a step updates in place (``usage``, SDNC's links; same stack,
  :meth:`UndoLog.record_rows`), stays open when it is rewound to its start, and allows
  recording after backward has started. The executor can then rewind every table to a
  checkpoint (:meth:`UndoLog.rewind`) and recompute a segment, which records its writes
  again. The gradient buffer grows as recomputed segments touch new rows, and
  non-differentiable choices (the index's top-K rows) are replayed from their first
  evaluation (:meth:`UndoLog.replay`), so a recomputed step makes the choices of the
  forward pass even with an approximate index. Plain BPTT needs none of this and pays
  for none of it: its backward restores the memory only, as before.

The memory at the start of the unroll is a constant (no gradient flows into it), as for
any state at a truncated-BPTT boundary. A recorded unroll must be backpropagated (or
:meth:`UndoLog.discard`-ed) before the memory is used in a new recorded unroll: the
backward pass rewrites the memory tensor in place.
"""

from __future__ import annotations

import weakref

import torch


class OpenLogs:
    """The open undo log of each memory tensor, if it has one.

    Held weakly: a log stays open while something uses it (the autograd graph of a
    recorded unroll, a journal's owner), and closes by itself when nothing does. A log
    holds its memory, so a memory with an open log cannot be freed and its ``id`` reused.
    """

    def __init__(self):
        self._logs: weakref.WeakValueDictionary[int, UndoLog] = weakref.WeakValueDictionary()

    def get(self, memory: torch.Tensor) -> UndoLog | None:
        log = self._logs.get(id(memory))
        return log if log is not None and log.memory is memory else None

    def open(self, log: UndoLog) -> None:
        if self.get(log.memory) is not None:
            raise RuntimeError("memory already has an open undo log: backpropagate or discard it first")
        self._logs[id(log.memory)] = log

    def close(self, log: UndoLog) -> None:
        if self.get(log.memory) is log:
            del self._logs[id(log.memory)]


OPEN_LOGS = OpenLogs()


class UndoLog:
    """A stack of (table, flat row indices, old rows) entries for one recorded unroll.

    The memory's writes are entries like any other table's; an entry's position in the
    stack is its number. ``applied`` entries are applied to the tables: reverting an entry
    pops it, so the stack is always exactly the changes since the log was opened.

    Args:
        memory: ``[B, N, W]`` the memory tensor, kept by reference.
        journal: keep the log open across rewinds and record without grad (module docstring).
    """

    def __init__(self, memory: torch.Tensor, journal: bool = False):
        self.memory = memory
        self.num_rows = memory.shape[1]
        self.journal = journal
        self.entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (table, flat [P], old [P, ...])
        self.touched: list[torch.Tensor] = []  # rows read or written since the gradient buffer last grew
        self.touched_bytes = 0  # of those, the reads' (a write's rows are its entry's)
        self.rows_touched = 0  # rows read or written so far, duplicates counted
        self.keys: torch.Tensor | None = None  # sorted distinct flat rows with a gradient slot, [U]
        self.grad: torch.Tensor | None = None  # ∂L/∂M at ``keys``, [U, W]
        self.decisions: dict[int, torch.Tensor] = {}  # journal: first result of each replayed choice
        self.on_revert: list = []  # callbacks f(table, flat_rows [P]) after rows are reverted
        self.tables: list[torch.Tensor] = [memory]  # every table a journal's steps update in place
        self.table_bytes = _nbytes(memory)
        self.rows_in_use = self.total_rows  # at opening: a journal's bound reserves them for resets
        self.live_bytes = 0
        self.peak_bytes = 0

    @classmethod
    def open_journal(cls, memory: torch.Tensor, tables: list[torch.Tensor], rows_in_use: int | None = None) -> UndoLog:
        """Attach a journal-mode log to ``memory`` (which must have no open log) for steps
        that update ``tables`` ``[B, N, ...]`` (the memory among them) in place.
        ``rows_in_use``: of the ``B·N`` rows, how many any table holds other than fresh
        (default: all of them)."""
        log = cls(memory, journal=True)
        log.tables = list(tables)
        log.table_bytes = sum(_nbytes(t) for t in tables)
        if rows_in_use is not None:
            log.rows_in_use = rows_in_use
        OPEN_LOGS.open(log)
        return log

    @property
    def total_rows(self) -> int:
        """B·N: the rows of each table."""
        return self.memory.shape[0] * self.num_rows

    @property
    def applied(self) -> int:
        """Entries currently applied to the tables."""
        return len(self.entries)

    # -- forward ------------------------------------------------------------------------
    def flat(self, rows: torch.Tensor) -> torch.Tensor:
        """``[B, ...]`` row indices -> ``[B, ...]`` flat indices ``b·N + row``."""
        offsets = torch.arange(rows.shape[0], device=rows.device) * self.num_rows
        return rows + offsets.view(-1, *([1] * (rows.dim() - 1)))

    def _count(self, nbytes: int) -> None:
        self.live_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def record_rows(self, table: torch.Tensor, flat_rows: torch.Tensor, written: torch.Tensor | None = None) -> int:
        """Save the current value of rows ``flat_rows`` ``[P]`` of ``table`` ``[B, N, ...]``;
        returns the entry number. For the memory, ``written`` (default: all of them) are
        the rows that get a gradient slot; rows only erased need none (their ∂L/∂M is 0
        unless a later step touched them)."""
        if self.keys is not None and not self.journal:
            raise RuntimeError("memory written after backward started on its undo log")
        old = _rows_view(table).index_select(0, flat_rows)
        self.entries.append((table, flat_rows, old))
        self._count(_nbytes(flat_rows) + _nbytes(old))
        if table is self.memory:
            written = flat_rows if written is None else written
            if written.numel():
                self.touched.append(written)
                self.rows_touched += written.numel()
        return len(self.entries) - 1

    def record_write(self, flat_rows: torch.Tensor, written: torch.Tensor | None = None) -> int:
        """Save the memory rows ``flat_rows`` ``[P]`` before a write; returns the entry number."""
        return self.record_rows(self.memory, flat_rows, written)

    def record_read(self, flat_rows: torch.Tensor) -> None:
        if self.keys is not None and not self.journal:
            raise RuntimeError("memory read after backward started on its undo log")
        self.touched.append(flat_rows.reshape(-1))
        self.touched_bytes += _nbytes(flat_rows)
        self.rows_touched += flat_rows.numel()
        self._count(_nbytes(flat_rows))

    def replay(self, compute):
        """``compute()``, or in a journal the result it gave the first time the log stood at
        this position: recomputed steps repeat the forward pass's choices."""
        if not self.journal:
            return compute()
        key = self.applied
        result = self.decisions.get(key)
        if result is None:
            result = self.decisions[key] = compute()
            self._count(_nbytes(result))
        return result

    # -- rewinding ----------------------------------------------------------------------
    def mark(self) -> int:
        """A position to :meth:`rewind` to later: the number of applied entries."""
        return self.applied

    def rewind(self, mark: int) -> None:
        """Revert the tables to their value at ``mark`` (a journal stays open)."""
        if mark > self.applied:
            raise RuntimeError(f"cannot rewind the undo log forward (from {self.applied} to {mark} entries)")
        self.rewind_to(mark)

    def forget_choices_after(self, mark: int) -> None:
        """Drop replayed choices made past ``mark`` (after a trial run that is not replayed)."""
        for key in [k for k in self.decisions if k >= mark]:
            self._count(-_nbytes(self.decisions.pop(key)))

    def rewind_to(self, applied: int) -> None:
        """Revert entries until only the first ``applied`` remain applied."""
        while len(self.entries) > applied:
            table, flat_rows, old = self.entries.pop()
            with torch.no_grad():
                _rows_view(table).index_copy_(0, flat_rows, old)  # duplicates carry equal rows
            self._count(-_nbytes(flat_rows) - _nbytes(old))
            for callback in self.on_revert:
                callback(table, flat_rows)
        if not self.entries and not self.journal:
            self.detach()

    # -- backward -----------------------------------------------------------------------
    def compact(self, flat_rows: torch.Tensor) -> torch.Tensor:
        """Positions of ``flat_rows`` in the compact gradient buffer (same shape).

        The buffer covers every row recorded so far; rows recorded since it was last grown
        (all of them at the first backward call, a recomputed segment's in a journal) get
        zero-gradient slots first."""
        if self.touched:
            every = torch.cat(([self.keys] if self.keys is not None else []) + self.touched)
            self._count(-self.touched_bytes)
            self.touched, self.touched_bytes = [], 0
            keys = torch.unique(every)
            if self.keys is None or keys.shape[0] != self.keys.shape[0]:
                grad = self.memory.new_zeros(keys.shape[0], self.memory.shape[2])
                if self.keys is not None:
                    grad[torch.searchsorted(keys, self.keys)] = self.grad
                self._count(self._buffer_bytes(keys, grad) - self._buffer_bytes(self.keys, self.grad))
                self.keys, self.grad = keys, grad
        return torch.searchsorted(self.keys, flat_rows)

    def zero_gradient(self, flat_rows: torch.Tensor) -> None:
        """∂L/∂M_{t−1} = 0 at rows the write erased; rows without a slot hold 0 already."""
        if self.keys is None or not flat_rows.numel():
            return
        position = torch.searchsorted(self.keys, flat_rows).clamp(max=self.keys.shape[0] - 1)
        self.grad[position[self.keys[position] == flat_rows]] = 0.0

    def bound_bytes(self, steps: int, logged_per_step: int, rows_per_step: int, rows_in_use: int | None = None) -> int:
        """The tables plus a bound on what a journal holds over ``steps`` steps that log at
        most ``logged_per_step`` bytes and read or write at most ``rows_per_step`` rows,
        from tables with ``rows_in_use`` rows in use (default: ``self.rows_in_use``):
        - the steps' entries, twice: a reset logs the rows it clears, and clearing a row
          that a step of the unroll touched needs that step's entry, at least as large;
        - every row in use at the start once more, for a reset that clears it untouched;
        - a gradient slot (key and W values) per row read or written, at most every row."""
        rows = self.total_rows
        in_use = self.rows_in_use if rows_in_use is None else rows_in_use
        reset_row = sum(8 + t[0, 0].numel() * t.element_size() for t in self.tables)
        slot = 8 + self.memory.shape[2] * self.memory.element_size()
        slots = min(rows, steps * rows_per_step)
        return self.table_bytes + 2 * steps * logged_per_step + min(in_use, rows) * reset_row + slots * slot

    @staticmethod
    def _buffer_bytes(keys, grad) -> int:
        return 0 if keys is None or grad is None else _nbytes(keys) + _nbytes(grad)

    def stored_bytes(self) -> int:
        """Bytes the log holds for backward now (entries, recorded rows, replayed choices,
        the gradient buffer)."""
        return self.live_bytes

    def detach(self) -> None:
        """Forget the log (the tables keep their current value)."""
        OPEN_LOGS.close(self)
        self._count(-self._buffer_bytes(self.keys, self.grad))
        self.grad = None

    def discard(self) -> None:
        """Give up on backpropagating this unroll: keep the tables as they are, drop the log
        (and its references to them; byte counts stay readable)."""
        self.entries, self.touched, self.decisions = [], [], {}
        self.live_bytes = self.touched_bytes = 0
        self.detach()
        self.keys, self.tables, self.on_revert = None, [], []

    close = discard


def _rows_view(table: torch.Tensor) -> torch.Tensor:
    """``[B, N, ...]`` -> ``[B·N, rest]``, sharing storage."""
    return table.view(table.shape[0] * table.shape[1], -1)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def undo_log_for(memory: torch.Tensor) -> UndoLog:
    """The open undo log of ``memory``, opening one if there is none."""
    log = OPEN_LOGS.get(memory)
    if log is None:
        log = UndoLog(memory)
        OPEN_LOGS.open(log)
    return log


def open_log(memory: torch.Tensor) -> UndoLog | None:
    """The open undo log of ``memory``, or ``None``."""
    return OPEN_LOGS.get(memory)


def start_token(token: torch.Tensor) -> torch.Tensor:
    """Make the token ``[B]`` differentiable so that every logged step gets a backward."""
    if torch.is_grad_enabled() and not token.requires_grad:
        return token.detach().clone().requires_grad_(True)
    return token


class SparseWrite(torch.autograd.Function):
    """M_t = (1 − R_t) ⊙ M_{t−1} + Σ_h w^W_{t,h} a_{t,h}^T, in place (eq. 4–5).

    Forward args:
        token: ``[B]`` the chain token (differentiable, zero).
        weights: ``[B, H, M]`` w^W_t at the rows ``indices`` (differentiable).
        add: ``[B, H, W]`` a_t, one add vector per head (differentiable).
        memory: ``[B, N, W]`` modified in place.
        log: the :class:`UndoLog` of ``memory``, or ``None`` (no recording).
        indices: ``[B, H, M]`` int64 rows written.
        erase: ``[B, E]`` int64 rows zeroed before the add (R_t), or an empty ``[B, 0]``.
        erase_mask: ``[B, E]`` bool, which erase entries apply, or ``None`` for all.
    Returns:
        the next token ``[B]``.
    """

    @staticmethod
    def forward(ctx, token, weights, add, memory, log, indices, erase, erase_mask):
        batch_size, _, width = memory.shape
        with torch.no_grad():
            flat_memory = memory.view(-1, width)
            flat_erase = None
            offsets = torch.arange(batch_size, device=memory.device) * memory.shape[1]
            if erase.shape[1]:
                flat_erase = (erase + offsets[:, None]).reshape(-1)
                if erase_mask is not None:
                    flat_erase = flat_erase[erase_mask.reshape(-1)]
            flat_write = indices + offsets.view(-1, 1, 1)
            if log is not None:
                touched = flat_write.reshape(-1)
                if flat_erase is not None:
                    touched = torch.cat([flat_erase, touched])
                ctx.entry = log.record_write(touched, written=flat_write.reshape(-1))
            if flat_erase is not None:
                flat_memory.index_fill_(0, flat_erase, 0.0)  # (1 − R_t) ⊙ M_{t−1}
            delta = weights.detach()[..., None] * add.detach()[:, :, None, :]  # [B,H,M,W]
            flat_memory.index_add_(0, flat_write.reshape(-1), delta.reshape(-1, width))
        ctx.log = log
        ctx.flat_write = flat_write
        ctx.flat_erase = flat_erase
        ctx.save_for_backward(weights, add)
        return token.clone()

    @staticmethod
    def backward(ctx, grad_token):
        weights, add = ctx.saved_tensors
        log: UndoLog = ctx.log
        log.rewind_to(ctx.entry + 1)
        position = log.compact(ctx.flat_write)  # [B, H, M]
        grad_rows = log.grad[position]  # ∂L/∂M_t at the written rows, [B, H, M, W]
        grad_weights = (grad_rows * add[:, :, None, :]).sum(-1)  # ∂L/∂w^W
        grad_add = (weights[..., None] * grad_rows).sum(2)  # ∂L/∂a
        if ctx.flat_erase is not None:
            log.zero_gradient(ctx.flat_erase)  # erased rows: ∂L/∂M_{t−1} = 0
        log.rewind_to(ctx.entry)
        return grad_token, grad_weights, grad_add, None, None, None, None, None


class SparseGather(torch.autograd.Function):
    """The rows M_t[s] that a sparse read uses; their gradient goes into ∂L/∂M_t sparsely.

    Forward args:
        token: ``[B]`` the chain token.
        memory: ``[B, N, W]``.
        log: the :class:`UndoLog` of ``memory`` or ``None``.
        indices: ``[B, H, K]`` int64 rows s_{t,h,k}.
    Returns:
        (rows ``[B, H, K, W]``, next token ``[B]``).
    """

    @staticmethod
    def forward(ctx, token, memory, log, indices):
        batch_size, num_rows, width = memory.shape
        flat = indices + (torch.arange(batch_size, device=memory.device) * num_rows).view(-1, 1, 1)
        rows = memory.view(-1, width).index_select(0, flat.reshape(-1)).view(*indices.shape, width)
        if log is not None:
            log.record_read(flat)
            ctx.applied = log.applied
        ctx.log = log
        ctx.flat = flat
        return rows, token.clone()

    @staticmethod
    def backward(ctx, grad_rows, grad_token):
        log: UndoLog = ctx.log
        log.rewind_to(ctx.applied)
        if grad_rows is not None:
            position = log.compact(ctx.flat).reshape(-1)
            log.grad.index_add_(0, position, grad_rows.reshape(-1, grad_rows.shape[-1]))
        return grad_token, None, None, None
