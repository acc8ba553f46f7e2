"""Sparse Access Memory (Rae et al. 2016, arXiv 1610.09027) and its dense baselines.

One module per mechanism: :mod:`usage` (U(2) LRU), :mod:`index` (exact / faiss top-K),
:mod:`undo_log` (in-place writes + the autograd Functions that revert them),
:mod:`sparse_read`, :mod:`sparse_write`, :mod:`links` (SDNC sparse temporal links),
:mod:`step_code` (an optional code of the step for addressing by time); cores:
:class:`SAMCore`, :class:`SDNCCore`, and the dense :class:`DAMCore` and :class:`NTMCore`.

Note: SAM is covered by US patent 11,151,443 held by the paper's authors' employer.
"""

from agents.sam.dense_cores import DAMCore, NTMCore
from agents.sam.sam_core import SAMCore, SparseMemoryCore
from agents.sam.sdnc_core import SDNCCore

__all__ = ["DAMCore", "NTMCore", "SAMCore", "SDNCCore", "SparseMemoryCore"]
