"""Finding the top-K rows for SAM's sparse read: an exact scan and an approximate index.

Rae et al. 2016 (arXiv 1610.09027), §3.5: the K rows most similar to a query come from an
approximate nearest-neighbour (ANN) index over the memory (a FLANN randomised k-d forest or
LSH, rebuilt every N insertions); only those K rows are then weighted (eq. 2).

- :class:`ExactIndex` — cosine similarity of every query with every row (one batched
  matmul) and ``topk``: O(N·W) per query, exact; the reference.
- :class:`FaissIndex` — per sequence, a faiss HNSW graph (inner product on unit vectors =
  cosine) over a *snapshot* of the rows written since the episode reset, plus an exact
  *delta* set of rows written since the snapshot. Writes only add their rows to the delta
  (incremental update, O(1)); the snapshot is rebuilt when the delta exceeds
  ``rebuild_every`` rows (never every step). A query takes the HNSW candidates, the whole
  delta and ``top_k`` never-written rows (all zero: cosine 0, the value an exact scan gives
  unwritten rows) and re-ranks them exactly against the *current* memory, so a stale
  snapshot entry can cost recall but never a wrong similarity.

Both return ``[B, H, K]`` int64 row indices; the similarities themselves are recomputed
differentiably by the read (:mod:`agents.sam.sparse_read`). faiss is imported lazily; if
it is missing, asking for ``index="faiss"`` raises an ``ImportError`` that says to use
``index="exact"`` or install ``faiss-cpu``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch.utils.weak import WeakTensorKeyDictionary

EPSILON = 1e-6  # in the cosine denominator: an all-zero row has similarity 0


def cosine_similarity(query: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """D(q, M_i) = q·M_i / (|q| |M_i| + ε).

    Args:
        query: ``[B, H, W]``.
        rows: ``[B, H, C, W]`` (per-head rows) or ``[B, C, W]`` (shared by the heads).
    Returns:
        ``[B, H, C]``.
    """
    if rows.dim() == 3:
        dot = torch.bmm(query, rows.transpose(1, 2))
        row_norm = rows.norm(dim=-1)[:, None, :]
    else:
        dot = (query[:, :, None, :] * rows).sum(-1)
        row_norm = rows.norm(dim=-1)
    return dot / (query.norm(dim=-1)[..., None] * row_norm + EPSILON)


class MemoryIndex(Protocol):
    """What the core asks of an index: the top-K search, and the events that change the
    memory it indexes. An index keeps whatever it builds per memory tensor itself."""

    name: str

    def search(self, memory: torch.Tensor, query: torch.Tensor, k: int) -> torch.Tensor:
        """Args: memory ``[B, N, W]``, query ``[B, H, W]``. Returns ``[B, H, k]`` int64."""

    def written(self, memory: torch.Tensor, rows: torch.Tensor) -> None:
        """Rows ``[B, M]`` int64 of each sequence were written."""

    def reverted(self, memory: torch.Tensor, flat_rows: torch.Tensor) -> None:
        """Flat rows ``b·N + i`` ``[P]`` were restored by the undo log."""

    def reset(self, memory: torch.Tensor, sequences: torch.Tensor) -> None:
        """Sequences ``[R]`` int64 had their memory cleared."""

    def start_empty(self, memory: torch.Tensor) -> None:
        """``memory`` is new and all zero."""

    def forget(self, memory: torch.Tensor) -> None:
        """``memory`` was filled behind the index's back: rebuild from its rows on next use."""


class ExactIndex:
    """Exact top-K by cosine similarity over all N rows (batched matmul + ``topk``); it
    keeps nothing between searches, so every event is a no-op."""

    name = "exact"

    def search(self, memory: torch.Tensor, query: torch.Tensor, k: int) -> torch.Tensor:
        with torch.no_grad():
            return cosine_similarity(query, memory).topk(k, dim=-1).indices

    def written(self, memory: torch.Tensor, rows: torch.Tensor) -> None:
        pass

    def reverted(self, memory: torch.Tensor, flat_rows: torch.Tensor) -> None:
        pass

    def reset(self, memory: torch.Tensor, sequences: torch.Tensor) -> None:
        pass

    def start_empty(self, memory: torch.Tensor) -> None:
        pass

    def forget(self, memory: torch.Tensor) -> None:
        pass


class _SequenceIndex:
    """The ANN structure of one sequence's memory (see :class:`FaissIndex`)."""

    def __init__(self, width: int, num_rows: int, neighbours: int, ef_search: int):
        self.width = width
        self.num_rows = num_rows
        self.neighbours = neighbours
        self.ef_search = ef_search
        self.live: set[int] = set()  # rows written since the reset (maybe non-zero)
        self.delta: set[int] = set()  # rows written since the snapshot
        self.snapshot = None  # faiss index over the live rows at the last rebuild
        self.free_pointer = 0  # every row below it is live
        self.rebuilds = 0

    def written(self, rows) -> None:
        self.live.update(rows)
        self.delta.update(rows)

    def rebuild(self, memory_rows: torch.Tensor) -> None:
        import faiss

        ids = np.fromiter(sorted(self.live), dtype=np.int64, count=len(self.live))
        vectors = memory_rows[torch.from_numpy(ids)].detach().float().numpy()
        vectors = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + EPSILON)
        graph = faiss.IndexHNSWFlat(self.width, self.neighbours, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = self.ef_search
        index = faiss.IndexIDMap(graph)
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.snapshot = index
        self.delta.clear()
        self.rebuilds += 1

    def zero_rows(self, count: int) -> list[int]:
        """Up to ``count`` rows never written since the reset (all zero)."""
        found: list[int] = []
        p = self.free_pointer
        while p < self.num_rows and p in self.live:
            p += 1
        self.free_pointer = p
        while len(found) < count and p < self.num_rows:
            if p not in self.live:
                found.append(p)
            p += 1
        return found

    def candidates(self, queries: np.ndarray, k: int, oversample: int) -> np.ndarray:
        parts = [np.fromiter(self.delta, dtype=np.int64, count=len(self.delta))]
        if self.snapshot is not None and self.snapshot.ntotal:
            q = queries / (np.linalg.norm(queries, axis=1, keepdims=True) + EPSILON)
            _, ids = self.snapshot.search(np.ascontiguousarray(q, dtype=np.float32), oversample * k)
            parts.append(ids.reshape(-1))
        parts.append(np.asarray(self.zero_rows(k), dtype=np.int64))
        found = np.unique(np.concatenate(parts))
        return found[found >= 0]


class FaissIndex:
    """Approximate top-K: faiss HNSW snapshot + exact delta, re-ranked exactly.

    Args:
        rebuild_every: rebuild a sequence's snapshot when this many distinct rows were
            written since the last one.
        neighbours: HNSW graph degree (faiss ``M``).
        ef_search: HNSW search beam width.
        oversample: the snapshot returns ``oversample · K`` candidates per query.
    """

    name = "faiss"

    def __init__(self, rebuild_every: int = 1024, neighbours: int = 16, ef_search: int = 64,
                 oversample: int = 2):
        try:
            import faiss
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "index='faiss' needs the faiss-cpu package (pip install faiss-cpu); "
                "use index='exact' to run without it"
            ) from error
        # Each query is one sequence's handful of vectors: faiss's OpenMP threads only
        # spin against torch's (measured: the test suite ran 10x slower on 2 cores).
        faiss.omp_set_num_threads(1)
        self.rebuild_every = rebuild_every
        self.neighbours = neighbours
        self.ef_search = ef_search
        self.oversample = oversample
        # memory tensor -> its per-sequence structures, for as long as the tensor lives
        self._structures = WeakTensorKeyDictionary()

    def _fresh(self, memory: torch.Tensor) -> list[_SequenceIndex]:
        batch_size, num_rows, width = memory.shape
        return [_SequenceIndex(width, num_rows, self.neighbours, self.ef_search) for _ in range(batch_size)]

    def _state(self, memory: torch.Tensor) -> list[_SequenceIndex]:
        """Per-sequence structures of this memory tensor (built from its rows if missing)."""
        state = self._structures.get(memory)
        if state is None:
            state = self._fresh(memory)
            nonzero = memory.detach().abs().sum(-1) != 0  # [B, N]
            for b, sequence in enumerate(state):
                sequence.written(torch.nonzero(nonzero[b]).view(-1).tolist())
            self._structures[memory] = state
        return state

    def search(self, memory: torch.Tensor, query: torch.Tensor, k: int) -> torch.Tensor:
        """Args: memory ``[B, N, W]``, query ``[B, H, W]``. Returns ``[B, H, k]`` int64."""
        state = self._state(memory)
        queries = query.detach().float().numpy()
        pools = []
        for b, sequence in enumerate(state):
            if len(sequence.delta) > self.rebuild_every:
                sequence.rebuild(memory[b])
            pools.append(sequence.candidates(queries[b], k, self.oversample))
        width = max(len(pool) for pool in pools)
        padded = np.full((len(pools), width), -1, dtype=np.int64)
        for b, pool in enumerate(pools):
            padded[b, : len(pool)] = pool
        candidates = torch.from_numpy(padded)  # [B, C]
        with torch.no_grad():
            rows = memory.gather(1, candidates.clamp(min=0)[..., None].expand(-1, -1, memory.shape[2]))
            similarity = cosine_similarity(query, rows)  # [B, H, C]
            similarity = similarity.masked_fill((candidates < 0)[:, None, :], -float("inf"))
            best = similarity.topk(k, dim=-1).indices  # [B, H, k]
        return candidates.gather(1, best.view(best.shape[0], -1)).view_as(best)

    def start_empty(self, memory: torch.Tensor) -> None:
        """Empty structures for a memory known to be all zero (no O(N·W) scan)."""
        self._structures[memory] = self._fresh(memory)

    def forget(self, memory: torch.Tensor) -> None:
        self._structures.pop(memory, None)

    def written(self, memory: torch.Tensor, rows: torch.Tensor) -> None:
        """Rows ``[B, M]`` int64 changed in each sequence (incremental update)."""
        state = self._state(memory)
        rows_np = rows.detach().cpu().numpy()
        for b, sequence in enumerate(state):
            sequence.written(rows_np[b].tolist())

    def reverted(self, memory: torch.Tensor, flat_rows: torch.Tensor) -> None:
        """Flat rows ``b·N + i`` ``[P]`` were restored by the undo log."""
        state = self._structures.get(memory)
        if state is None:
            return
        flat = flat_rows.cpu().numpy()
        batch, rows = np.divmod(flat, memory.shape[1])
        for b, row in zip(batch.tolist(), rows.tolist()):
            state[b].delta.add(row)
            state[b].live.add(row)

    def reset(self, memory: torch.Tensor, sequences: torch.Tensor) -> None:
        """Sequences ``[R]`` int64 had their memory cleared."""
        state = self._structures.get(memory)
        if state is None:
            return
        _, num_rows, width = memory.shape
        for b in sequences.tolist():
            state[b] = _SequenceIndex(width, num_rows, self.neighbours, self.ef_search)


def make_index(kind: str, **options) -> MemoryIndex:
    """``"exact"`` -> :class:`ExactIndex`; ``"faiss"`` -> :class:`FaissIndex`."""
    if kind == "exact":
        return ExactIndex()
    if kind == "faiss":
        return FaissIndex(**options)
    raise ValueError(f"index must be 'exact' or 'faiss', got {kind!r}")
