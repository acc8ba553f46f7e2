"""SAM's usage U(2): a true per-sequence least-recently-used (LRU) order over memory rows.

Rae et al. 2016 ("Scaling Memory-Augmented Neural Networks with Sparse Reads and Writes",
arXiv 1610.09027), §3.3 and Supplementary D. U(2)_t(i) is the time since row ``i`` was last
accessed with a non-negligible weight::

    u_t(i) = t          if w^R_t(i) > δ or w^W_t(i) > δ      (δ = 0.005)
    u_t(i) = u_{t-1}(i) otherwise

and the write goes to the least recently used row I^U_t = argmin_i u_{t-1}(i) (eq. 5).

Here ``usage`` is an ``int64`` tensor ``[B, N]`` of last-access *time stamps* (``0`` means
never accessed since the episode reset; the first step of an episode is time 1), and every
sequence has its own clock ``time`` ``[B]``: nothing is shared between sequences or kept
on the module. Ties are broken by the lowest row index, so the LRU order is a total
order: ``key(i) = (u(i), i)``.

Two implementations of the same order:

- :func:`least_recently_used` — vectorised ``argmin``-style selection, O(N) per step; the
  reference, fast for small N.
- :class:`LRUHeap` — per sequence, a pointer to the lowest never-accessed row plus a
  lazy-deletion min-heap of (time, row) for accessed rows: O(H·K·log) per step, flat in N.
  The core keeps one per ``usage`` tensor in its :class:`LRUHeaps` and rebuilds it from
  ``usage`` when missing, so ``usage`` stays the single source of truth.
"""

from __future__ import annotations

import heapq

import numpy as np
import torch
from torch.utils.weak import WeakTensorKeyDictionary

DEFAULT_THRESHOLD = 0.005  # δ of U(2)


def record_access(
    usage: torch.Tensor,
    time: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
) -> None:
    """Stamp rows accessed with weight > δ with the current time, in place.

    Args:
        usage: ``[B, N]`` int64 last-access times, modified in place.
        time: ``[B]`` int64, the current time t of each sequence (≥ 1).
        indices: ``[B, M]`` int64 rows accessed this step (duplicates allowed).
        weights: ``[B, M]`` the access weights (read or write); only ``> threshold`` count.
    """
    with torch.no_grad():
        batch_size, count = indices.shape
        stamp = time[:, None].expand(batch_size, count)
        current = usage.gather(1, indices)
        new = torch.where(weights.detach() > threshold, stamp, current)
        # Duplicates with different decisions: max keeps the access (t > any old stamp).
        usage.scatter_reduce_(1, indices, new, reduce="amax")


def least_recently_used(usage: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` least recently used rows of each sequence, LRU first.

    Args:
        usage: ``[B, N]`` int64 last-access times.
        count: how many distinct rows to return (one per write head).
    Returns:
        ``[B, count]`` int64 row indices ordered by ``(u(i), i)``.
    """
    num_rows = usage.shape[1]
    key = usage * num_rows + torch.arange(num_rows, device=usage.device)
    return torch.topk(key, count, dim=1, largest=False, sorted=True).indices


class LRUHeap:
    """O(log N) LRU order for every sequence of a ``usage`` tensor.

    Invariant: ``usage`` is the truth. ``pointer[b]`` is ≤ the lowest row with
    ``usage == 0``; ``heap[b]`` holds (time, row) for every accessed row's current stamp,
    plus stale entries that are dropped lazily when they no longer match ``usage``.
    Only CPU tensors are supported (the heap reads ``usage`` through a numpy view).

    Args:
        usage: ``[B, N]`` int64 CPU tensor (read through a numpy view of its storage).
        empty: the caller guarantees ``usage`` is all zero (skips the O(N) scan).
    """

    def __init__(self, usage: torch.Tensor, empty: bool = False):
        if usage.device.type != "cpu":
            raise ValueError(f"LRUHeap needs a CPU usage tensor, got device {usage.device}")
        self._view = usage.numpy()
        self.pointer = [0] * usage.shape[0]
        self.heap: list[list[tuple[int, int]]] = [[] for _ in range(usage.shape[0])]
        if not empty:
            for b in range(usage.shape[0]):
                self.rebuild(b)

    def rebuild(self, b: int) -> None:
        """Recompute sequence ``b``'s structure from ``usage`` (after reset or unpack)."""
        row_usage = self._view[b]
        touched = np.flatnonzero(row_usage)
        heap = list(zip(row_usage[touched].tolist(), touched.tolist()))
        heapq.heapify(heap)
        self.heap[b] = heap
        self.pointer[b] = 0

    def pushed(self, indices: torch.Tensor) -> None:
        """Register rows whose stamp may have changed (call after :func:`record_access`).

        Args:
            indices: ``[B, M]`` int64 rows that were accessed this step.
        """
        rows = indices.detach().cpu().numpy()
        for b in range(rows.shape[0]):
            heap = self.heap[b]
            row_usage = self._view[b]
            for row in np.unique(rows[b]).tolist():
                stamp = int(row_usage[row])
                if stamp:
                    heapq.heappush(heap, (stamp, row))

    def restored(self, flat_rows: torch.Tensor) -> None:
        """Register rows whose stamp an undo log put back (``b·N + row``, ``[P]``): an
        older stamp may have been dropped from the heap as stale, and a zero stamp may sit
        below the pointer."""
        num_rows = self._view.shape[1]
        batch, rows = np.divmod(flat_rows.detach().cpu().numpy(), num_rows)
        for b, row in zip(batch.tolist(), rows.tolist()):
            stamp = int(self._view[b, row])
            if stamp:
                heapq.heappush(self.heap[b], (stamp, row))
            else:
                self.pointer[b] = min(self.pointer[b], row)

    def least_recently_used(self, count: int) -> torch.Tensor:
        """Same contract as :func:`least_recently_used` (``[B, count]``, LRU first)."""
        out = np.empty((len(self.heap), count), dtype=np.int64)
        num_rows = self._view.shape[1]
        for b in range(len(self.heap)):
            row_usage = self._view[b]
            chosen: list[int] = []
            # Never-accessed rows (u = 0) come first, lowest index first.
            p = self.pointer[b]
            while p < num_rows and row_usage[p] != 0:
                p += 1
            self.pointer[b] = p
            q = p
            while len(chosen) < count and q < num_rows:
                if row_usage[q] == 0:
                    chosen.append(q)
                q += 1
            heap = self.heap[b]
            popped: list[tuple[int, int]] = []
            while len(chosen) < count:
                stamp, row = heapq.heappop(heap)
                if row_usage[row] != stamp or (stamp, row) in popped:
                    continue  # stale entry: the row was accessed again since
                popped.append((stamp, row))
                chosen.append(row)
            for entry in popped:  # peeking, not consuming: the row stays until re-stamped
                heapq.heappush(heap, entry)
            out[b] = chosen
        return torch.from_numpy(out)


class LRUHeaps:
    """One :class:`LRUHeap` per ``usage`` tensor, for as long as that tensor lives (a heap
    reads its tensor's storage and never holds the tensor itself, so the entry goes with it)."""

    def __init__(self):
        self._heaps = WeakTensorKeyDictionary()

    def of(self, usage: torch.Tensor) -> LRUHeap:
        """The heap of ``usage``, built from its stamps on first use (O(B·N))."""
        heap = self._heaps.get(usage)
        if heap is None:
            heap = self._heaps[usage] = LRUHeap(usage)
        return heap

    def start_empty(self, usage: torch.Tensor) -> None:
        """``usage`` is known to be all zero: give it an empty heap (no O(N) scan)."""
        self._heaps[usage] = LRUHeap(usage, empty=True)

    def forget(self, usage: torch.Tensor) -> None:
        """``usage`` was overwritten behind the heap's back: rebuild it on next use."""
        self._heaps.pop(usage, None)
