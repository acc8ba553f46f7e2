"""Planner for memory-efficient BPTT (Gruslys et al. 2016, "Memory-Efficient
Backpropagation Through Time", arXiv:1606.03401): BPTT-HSM, BPTT-ISM and BPTT-MSM.

The planner is pure (numpy, no torch). It answers: given a sequence of ``t`` steps and a
memory of ``m`` units, in which order should the forward steps be run, which results
should be stored and where, so that the backward pass costs the fewest forward step
evaluations? :func:`plan` returns a :class:`Plan` whose ``actions`` the executor in
:mod:`learners.bptt.executor` runs.

Cost and memory model (paper §3)
--------------------------------
* Cost is the number of forward step evaluations, *including* the first forward pass.
  Every step is back-propagated exactly once; that part is the same for every policy and
  is not counted.
* Memory is counted in units of one hidden state ``h`` (the recurrent state passed between
  steps). An internal state -- everything that back-propagating one step needs, including
  its output hidden state -- costs ``alpha`` units (α in the paper; rounded up to an
  integer here so that the dynamic programme runs over integer memory).
* ``m`` includes the unit holding the hidden state the (sub)sequence starts from, so
  ``m = 1`` means "only the initial state is kept", as in the paper's Q(t, 1) = t(t+1)/2.
* Working memory is not counted: the one hidden state being advanced (the "cursor") and
  the internal state of the one step being back-propagated right now. The byte planner
  (:func:`plan_for_budget`) adds them back.

The dynamic programme (derived here; the paper gives the HSM form, eq. for Q(t, m) in
§3.2, and describes ISM/MSM in §3.3-3.4)
-------------------------------------------------------------------------------------
Q(t, m) is the least cost of back-propagating a subsequence of ``t`` steps that starts from
a stored hidden state, given the gradient w.r.t. its final hidden state, within ``m``
units (its start included). Three moves are possible at the top of a subsequence:

(a) *sweep*: run all ``t`` steps forward; the last step's internal state is then at hand,
    so back-propagate it and solve the first ``t - 1`` steps again from the start:
        t + Q(t - 1, m)
(b) *store a hidden state* after ``y`` steps (1 <= y < t), costing one unit while the
    right part runs (HSM, eq. of §3.2):
        y + Q(t - y, m - 1) + Q(y, m)
    The right part's start is the stored ``h_y``, which its own ``m - 1`` includes.
(c) *store an internal state* of step ``y`` (1 <= y < t), costing α units. Back-propagating
    step ``y`` then needs no recomputation, so the left part shrinks to ``y - 1`` steps:
        y + Q(t - y, m - α) + Q(y - 1, m)
    The right part starts from the hidden state inside the stored internal state; giving
    it ``m - α`` units (its start included) charges exactly ``1 + α + (m - α - 1) = m``.
    With y = 1 the stored step reads the subsequence's start, which is held already, so
    the tensors the step saves of its input are shared with it: such a *chained* internal
    state costs ``α₁ <= α`` units (``chained_alpha``; default α). A run of consecutive
    internal states, as in a segment of plain BPTT, then costs what plain BPTT holds per
    step rather than a whole standalone internal state each.

Q(t, m) = min over the moves allowed by the mode: HSM uses (a, b), ISM (a, c), MSM (a, b,
c). Boundary conditions: Q(0, m) = 0 for m >= 1; Q(t, m) = ∞ for m < 1 (no room for the
start). They reproduce the paper's HSM boundaries: Q(t, 1) = t(t+1)/2 (only (a) fits) and
Q(t, m) = 2t - 1 for t <= m. Move (a) equals (b) with y = t - 1, so adding it does not change
HSM. With enough memory (m >= 1 + (t-1)α) ISM/MSM reach Q(t, m) = t, plain BPTT. HSM has the
closed form of revolve plus t (paper §3.2): with r the least integer where C(m+r, m) >= t,
Q(t, m) = t + r·t - C(m+r, m+1); e.g. Q(1000, 10) = 4636, Q(1000, 20) = 3747. The tests
check the DP against it and against an exhaustive search over all policies.

A lower bound on any policy (ours)
----------------------------------
Reaching step T-1 for its backprop needs every earlier step run at least once, so every
step is evaluated before the first backprop. A step evaluated only once must keep the
internal state of that evaluation until its own backprop; all such steps but the last are
therefore held together, beside the start, when the first backprop runs: β + k·α₁ <= m
(β the units of a hidden state). Every other step runs at least twice, so no policy within
``m`` costs less than ``2T - 1 - k`` with ``k = ⌊(m - β) / α₁⌋`` (nor less than T):
:func:`cost_lower_bound`. The tests check it against the exhaustive search, where it is
often tight. It says how much any policy can gain over √T checkpointing (2T evaluations)
at that method's memory: at most about √T·(1 + β/α₁) evaluations.

Tables are computed once per (T, m, α, α₁, mode), vectorised over m and y (O(T²·m) work
on integer tables, each move only over the columns where it fits), and cached for
:func:`plan`; not for :func:`plan_for_budget`, whose callers keep the plan (at T = 4000 a
table takes about 18 MB). On the 2-core development machine, at the 512 units
:func:`plan_for_budget` caps m to, a table takes 0.5 s for T = 1000, 1.9 s for T = 2000,
6.5 s for T = 4000 and 22 s for T = 8000; it usually computes one per plan (see
:func:`plan_for_budget`). The cap also caps what a budget buys: a plan holds at most 511
chained internal states, so at T = 4000 a budget above about 13% of full BPTT's memory
plans like one at 13% unless ``max_units`` is raised (``learner.bptt.plan_units``).
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from learners.bptt.budget import MAX_UNITS, MODES, parse_bytes

# Move kinds in the choice tables.
_SWEEP, _HIDDEN, _INTERNAL = 0, 1, 2


class Op(enum.Enum):
    """Primitive actions of a schedule. ``step`` indices are 0-based time steps."""

    RESTORE = "restore"  # cursor <- hidden state held at the top of the checkpoint stack
    ADVANCE = "advance"  # run ``count`` steps forward from the cursor (no graph kept)
    PUSH_HIDDEN = "push_hidden"  # store the cursor's hidden state (1 unit)
    PUSH_INTERNAL = "push_internal"  # run step ``step`` keeping its internal state (α units)
    BACKPROP_STEP = "backprop_step"  # run step ``step`` and back-propagate it at once
    BACKPROP_INTERNAL = "backprop_internal"  # back-propagate the stored internal state; free it
    POP_HIDDEN = "pop_hidden"  # free the hidden state at the top of the stack


class Action(NamedTuple):
    op: Op
    step: int  # the time step the action concerns (the cursor position for RESTORE/PUSH_HIDDEN)
    count: int = 0  # number of steps, for ADVANCE

    def describe(self) -> str:
        if self.op is Op.ADVANCE:
            return f"forward   steps {self.step}..{self.step + self.count - 1}"
        return {
            Op.RESTORE: f"restore   h_{self.step}",
            Op.PUSH_HIDDEN: f"store     h_{self.step}",
            Op.PUSH_INTERNAL: f"forward   step {self.step}, store its internal state",
            Op.BACKPROP_STEP: f"forward   step {self.step}, backprop it",
            Op.BACKPROP_INTERNAL: f"backprop  step {self.step} from its stored internal state",
            Op.POP_HIDDEN: f"free      h_{self.step}",
        }[self.op]


class BudgetTooSmallError(ValueError):
    """The memory budget cannot hold even the smallest schedule."""

    def __init__(self, message: str, minimum_bytes: int):
        super().__init__(message)
        self.minimum_bytes = minimum_bytes


@dataclass(frozen=True)
class Plan:
    """An execution policy for one unroll of ``seq_len`` steps.

    Attributes:
        seq_len: T, the number of steps.
        memory_units: m, the memory the policy may use, in units (start state included).
        mode: ``"hsm"``, ``"ism"`` or ``"msm"``.
        hidden_units: units one stored hidden state costs (1 when units are hidden states).
        internal_units: units one stored internal state costs (α, integer).
        chained_units: units one chained internal state costs (α₁ <= α; module docstring).
        actions: the schedule; the executor runs it in order.
        cost: forward step evaluations over forward + backward, first pass included.
        peak_units: the most units held at once by stored states (start state included,
            working memory excluded).
        unit_bytes: bytes per unit when the plan came from :func:`plan_for_budget`.
        working_bytes: bytes reserved for working memory by :func:`plan_for_budget`.
    """

    seq_len: int
    memory_units: int
    mode: str
    hidden_units: int
    internal_units: int
    actions: tuple[Action, ...]
    cost: int
    peak_units: int
    unit_bytes: int | None = None
    working_bytes: int | None = None
    chained_units: int | None = None

    @property
    def memory_slots(self) -> int:
        """m in units of hidden states (equal to ``memory_units`` for :func:`plan`)."""
        return self.memory_units // self.hidden_units

    @property
    def peak_slots(self) -> float:
        """Peak stored memory in units of hidden states."""
        return self.peak_units / self.hidden_units

    @property
    def peak_bytes(self) -> int | None:
        """Bound on bytes held for backward, working memory included (byte plans only)."""
        if self.unit_bytes is None:
            return None
        return self.peak_units * self.unit_bytes + (self.working_bytes or 0)

    @property
    def cost_per_step(self) -> float:
        return self.cost / self.seq_len

    @property
    def cost_lower_bound(self) -> int:
        """Fewest evaluations any policy within this plan's memory could need."""
        chained = self.internal_units if self.chained_units is None else self.chained_units
        return cost_lower_bound(self.seq_len, self.memory_units, self.hidden_units, chained)

    @functools.cached_property
    def first_backprop_index(self) -> int:
        """Index in ``actions`` of the first backprop: everything before it is the forward pass."""
        return next(i for i, a in enumerate(self.actions) if a.op is Op.BACKPROP_STEP)

    @functools.cached_property
    def restored_pushes(self) -> frozenset[int]:
        """Indices of the push actions whose stack entry a later RESTORE reads; -1 stands for
        the start state's entry. Only these entries need the RNG state saved with them."""
        stack, restored = [-1], set()
        for index, action in enumerate(self.actions):
            if action.op in (Op.PUSH_HIDDEN, Op.PUSH_INTERNAL):
                stack.append(index)
            elif action.op in (Op.POP_HIDDEN, Op.BACKPROP_INTERNAL):
                stack.pop()
            elif action.op is Op.RESTORE:
                restored.add(stack[-1])
        return frozenset(restored)

    def render(self, max_actions: int = 200) -> str:
        """The schedule, one action per line, with the units held after each action."""
        lines = [str(self)]
        held_after: list[int] = []
        simulate(self.actions, self.seq_len, self.hidden_units, self.internal_units, self.chained_units, held_after)
        for index, (action, held) in enumerate(zip(self.actions, held_after)):
            if index == max_actions:
                lines.append(f"... {len(self.actions) - max_actions} more actions")
                break
            lines.append(f"{index:4d}  {action.describe():<52s} held {held}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return (
            f"Plan(mode={self.mode}, T={self.seq_len}, m={self.memory_units} units, "
            f"hidden={self.hidden_units}u, internal={self.internal_units}u"
            f"{'' if self.chained_units in (None, self.internal_units) else f' (chained {self.chained_units}u)'}, "
            f"cost={self.cost} "
            f"({self.cost_per_step:.3f}/step), peak={self.peak_units} units)"
        )


# --------------------------------------------------------------------------------------
# The dynamic programme.


def _unreachable(seq_len: int) -> tuple[type, int]:
    """The table dtype and its "no policy fits" value. Every finite cost is at most
    Q(T, 1) = T(T+1)/2, and a candidate adds two table entries and a split point, so the
    value must exceed the first and twice it must still fit the dtype."""
    if seq_len * (seq_len + 1) // 2 + seq_len < 2**29:
        return np.int32, 2**29
    return np.int64, 2**61


@functools.lru_cache(maxsize=32)
def _tables(
    seq_len: int, memory_units: int, hidden_units: int, internal_units: int, mode: str,
    chained_units: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q[t, m], best move[t, m] and split point y[t, m] for t <= T, m <= M (module docstring).
    Q holds integers; :func:`_unreachable`'s value where no policy fits. Ties go to the
    sweep, then to the moves in the order of ``blocks``, then to the smallest y.

    Row t needs only rows < t, vectorised over m and y. A move that stores ``shift`` units
    only exists for m >= shift, so each candidate block covers those columns alone. The
    rows are kept memory-major as well, so that a column's candidates are contiguous in y:
    ``left[m, s] = Q(s, m)`` and ``right[m, T - s] = Q(s, m) - s``, which folds the split
    point in, since y + Q(t - y, m) = t + right[m, T - t + y].
    """
    T, M, beta, alpha = seq_len, memory_units, hidden_units, internal_units
    alpha1 = alpha if chained_units is None else chained_units
    dtype, unreachable = _unreachable(T)
    left = np.full((M + 1, T + 1), unreachable, dtype=dtype)
    right = np.full((M + 1, T + 1), unreachable, dtype=dtype)
    move = np.zeros((T + 1, M + 1), dtype=np.int8)
    split = np.zeros((T + 1, M + 1), dtype=np.int32)
    left[beta:, 0] = right[beta:, T] = 0  # Q(0, m) = 0 where the start fits
    # Candidate blocks: (kind, units stored, split points y from, y = 1 only, left part Q(y) or Q(y-1)).
    blocks = []
    if mode in ("hsm", "msm"):
        blocks.append((_HIDDEN, beta, 1, False, 1))  # (b): y + Q(t-y, m-β) + Q(y, m)
    if mode in ("ism", "msm"):
        if alpha1 != alpha:  # y = 1 reads the held start: a chained internal state
            blocks.append((_INTERNAL, alpha1, 1, True, 0))
            blocks.append((_INTERNAL, alpha, 2, False, 0))  # (c): y + Q(t-y, m-α) + Q(y-1, m)
        else:
            blocks.append((_INTERNAL, alpha, 1, False, 0))
    scratch = np.empty((M + 1) * T, dtype=dtype)  # one buffer for every block's candidates
    columns = np.arange(M + 1)
    for t in range(1, T + 1):
        best = left[:, t - 1] + t  # (a) sweep
        best_move = np.full(M + 1, _SWEEP, dtype=np.int8)
        best_split = np.full(M + 1, t, dtype=np.int32)
        for kind, shift, first_y, only_first, left_offset in blocks:
            last_y = min(first_y, t - 1) if only_first else t - 1  # splits need 1 <= y < t
            if last_y < first_y or shift > M:
                continue
            width, count = M + 1 - shift, last_y - first_y + 1
            candidate = scratch[: width * count].reshape(width, count)  # [m - shift, y - first_y]
            np.add(
                right[:width, T - t + first_y : T - t + last_y + 1],  # Q(t - y, m - shift) - (t - y)
                left[shift:, first_y - 1 + left_offset : last_y + left_offset],  # Q(y, m) or Q(y - 1, m)
                out=candidate,
            )
            arg = candidate.argmin(axis=1)
            value = candidate[columns[:width], arg] + t
            better = value < best[shift:]
            improved = np.flatnonzero(better) + shift
            best[improved] = value[better]
            best_move[improved] = kind
            best_split[improved] = arg[better] + first_y
        np.minimum(best, unreachable, out=best)
        best[:beta] = unreachable
        left[:, t] = best
        right[:, T - t] = np.where(best < unreachable, best - t, unreachable)
        move[t] = best_move
        split[t] = best_split
    Q = np.ascontiguousarray(left.T)
    for table in (Q, move, split):
        table.setflags(write=False)
    return Q, move, split


def optimal_cost(
    seq_len: int, memory_slots: int, mode: str = "msm", alpha: float | None = None,
    chained_alpha: float | None = None,
) -> float:
    """Q(T, m) for memory in hidden-state units (∞ if m < 1)."""
    internal_units = _internal_units(mode, alpha)
    Q, _, _ = _tables(seq_len, memory_slots, 1, internal_units, mode, _chained_units(internal_units, chained_alpha))
    cost = int(Q[seq_len, memory_slots])
    return math.inf if cost >= _unreachable(seq_len)[1] else float(cost)


def cost_lower_bound(seq_len: int, memory_units: int, hidden_units: int = 1, chained_units: int = 1) -> int:
    """max(T, 2T - 1 - k), k = ⌊(m - β) / α₁⌋: no policy, nested or not, evaluates fewer
    steps within ``memory_units`` (module docstring, "A lower bound on any policy")."""
    if memory_units < hidden_units:
        raise ValueError(f"memory_units must hold the start state ({hidden_units} units), got {memory_units}")
    storable = (memory_units - hidden_units) // chained_units
    return max(seq_len, 2 * seq_len - 1 - storable)


def hsm_closed_form(seq_len: int, memory_slots: int) -> int:
    """Paper §3.2: Q(t, m) = t + r·t - C(m+r, m+1), r least with C(m+r, m) >= t."""
    t, m = seq_len, memory_slots
    if t == 0:
        return 0
    r = 0
    while math.comb(m + r, m) < t:
        r += 1
    return t + r * t - math.comb(m + r, m + 1)


def _internal_units(mode: str, alpha: float | None) -> int:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "hsm":
        return 1 if alpha is None else max(1, math.ceil(alpha))
    if alpha is None or not alpha >= 1:
        raise ValueError(f"mode {mode!r} needs alpha >= 1 (internal-state size in hidden states), got {alpha!r}")
    return math.ceil(alpha)


def _chained_units(internal_units: int, chained_alpha: float | None) -> int:
    if chained_alpha is None:
        return internal_units
    if not 1 <= chained_alpha:
        raise ValueError(f"chained_alpha must be >= 1 (a chained internal state holds its output), got {chained_alpha!r}")
    return min(internal_units, math.ceil(chained_alpha))


def plan(
    seq_len: int, memory_slots: int, mode: str = "msm", alpha: float | None = None,
    chained_alpha: float | None = None,
) -> Plan:
    """The cost-optimal policy for ``seq_len`` steps within ``memory_slots`` hidden-state units.

    Args:
        seq_len: T >= 1.
        memory_slots: m >= 1, memory in hidden states, the initial state included.
        mode: ``"hsm"`` (store hidden states), ``"ism"`` (store internal states) or
            ``"msm"`` (choose at each split).
        alpha: size of an internal state in hidden states (α; rounded up). Required for
            ISM / MSM.
        chained_alpha: size of an internal state whose input is already held (α₁; rounded
            up, at most α); default α.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if memory_slots < 1:
        raise ValueError(f"memory_slots must be >= 1 (the initial state), got {memory_slots}")
    internal_units = _internal_units(mode, alpha)
    return _plan_in_units(seq_len, memory_slots, 1, internal_units, mode, chained_units=_chained_units(internal_units, chained_alpha))


def _plan_in_units(
    seq_len: int,
    memory_units: int,
    hidden_units: int,
    internal_units: int,
    mode: str,
    unit_bytes: int | None = None,
    working_bytes: int | None = None,
    chained_units: int | None = None,
    keep_tables: bool = True,
) -> Plan:
    """The plan for memory in units; ``keep_tables=False`` leaves its DP tables out of the
    cache (a byte plan's tables are of no use once it is compiled)."""
    chained_units = internal_units if chained_units is None else chained_units
    tables = _tables if keep_tables else _tables.__wrapped__
    Q, move, split = tables(seq_len, memory_units, hidden_units, internal_units, mode, chained_units)
    actions = _compile(seq_len, memory_units, hidden_units, internal_units, chained_units, move, split)
    cost, peak = simulate(actions, seq_len, hidden_units, internal_units, chained_units)
    if peak > memory_units:
        raise AssertionError(f"schedule peak {peak} units > memory {memory_units} units")
    if cost != Q[seq_len, memory_units]:
        raise AssertionError(f"schedule cost {cost} != table cost {Q[seq_len, memory_units]}")
    return Plan(
        seq_len=seq_len,
        memory_units=memory_units,
        mode=mode,
        hidden_units=hidden_units,
        internal_units=internal_units,
        actions=tuple(actions),
        cost=cost,
        peak_units=peak,
        unit_bytes=unit_bytes,
        working_bytes=working_bytes,
        chained_units=chained_units,
    )


def _compile(T, M, beta, alpha, alpha1, move, split) -> list[Action]:
    """Unfold the choice tables into a flat schedule (iteratively: depth can reach T)."""
    actions: list[Action] = []
    work: list[tuple] = [("solve", 0, T, M)]
    cursor: int | None = 0
    while work:
        item = work.pop()
        kind = item[0]
        if kind == "pop_hidden":
            actions.append(Action(Op.POP_HIDDEN, item[1]))
            continue
        if kind == "backprop_internal":
            actions.append(Action(Op.BACKPROP_INTERNAL, item[1]))
            cursor = None
            continue
        _, start, length, units = item
        if length == 0:
            continue
        if cursor != start:
            actions.append(Action(Op.RESTORE, start))
            cursor = start
        choice, y = int(move[length, units]), int(split[length, units])
        if choice == _SWEEP:
            if length > 1:
                actions.append(Action(Op.ADVANCE, start, length - 1))
            actions.append(Action(Op.BACKPROP_STEP, start + length - 1))
            cursor = None
            work.append(("solve", start, length - 1, units))
        elif choice == _HIDDEN:
            actions.append(Action(Op.ADVANCE, start, y))
            actions.append(Action(Op.PUSH_HIDDEN, start + y))
            cursor = start + y
            work.append(("solve", start, y, units))
            work.append(("pop_hidden", start + y))
            work.append(("solve", start + y, length - y, units - beta))
        else:
            if y > 1:
                actions.append(Action(Op.ADVANCE, start, y - 1))
            actions.append(Action(Op.PUSH_INTERNAL, start + y - 1))
            cursor = start + y
            work.append(("solve", start, y - 1, units))
            work.append(("backprop_internal", start + y - 1))
            work.append(("solve", start + y, length - y, units - (alpha1 if y == 1 else alpha)))
    return actions


def simulate(
    actions, seq_len: int, hidden_units: int, internal_units: int, chained_units: int | None = None,
    held_after: list[int] | None = None,
) -> tuple[int, int]:
    """Run a schedule symbolically: check it is valid, return (cost, peak units).

    Valid means: every step is back-propagated exactly once, in order T-1 .. 0, each from
    a correctly positioned cursor or stored internal state; restores read the top of the
    stack; the stack is empty (but for the start) at the end. An internal state stored
    from the hidden state at the top of the stack is chained (``chained_units``). The
    units held after each action are appended to ``held_after`` when given.
    """
    chained_units = internal_units if chained_units is None else chained_units
    stack: list[tuple[str, int]] = [("hidden", 0)]  # (kind, position of its hidden state)
    sizes: list[int] = [hidden_units]  # units of each stack entry
    held = peak = hidden_units
    cursor: int | None = 0
    frontier = seq_len  # steps >= frontier are back-propagated
    cost = 0
    for action in actions:
        op = action.op
        if op is Op.RESTORE:
            if stack[-1][1] != action.step:
                raise ValueError(f"restore of h_{action.step} but top of stack is {stack[-1]}")
            cursor = action.step
        elif op is Op.ADVANCE:
            if cursor != action.step or action.step + action.count >= frontier:
                raise ValueError(f"bad advance {action} (cursor {cursor}, frontier {frontier})")
            cursor += action.count
            cost += action.count
        elif op is Op.PUSH_HIDDEN:
            if cursor != action.step:
                raise ValueError(f"store of h_{action.step} with cursor at {cursor}")
            stack.append(("hidden", action.step))
            sizes.append(hidden_units)
            held += hidden_units
        elif op is Op.PUSH_INTERNAL:
            if cursor != action.step or action.step >= frontier - 1:
                raise ValueError(f"bad internal store {action} (cursor {cursor})")
            size = chained_units if stack[-1][1] == action.step else internal_units
            stack.append(("internal", action.step + 1))
            sizes.append(size)
            held += size
            cursor = action.step + 1
            cost += 1
        elif op is Op.BACKPROP_STEP:
            if cursor != action.step or action.step != frontier - 1:
                raise ValueError(f"bad backprop {action} (cursor {cursor}, frontier {frontier})")
            frontier -= 1
            cursor = None
            cost += 1
        elif op is Op.BACKPROP_INTERNAL:
            if stack[-1] != ("internal", action.step + 1) or action.step != frontier - 1:
                raise ValueError(f"bad internal backprop {action} (stack top {stack[-1]})")
            stack.pop()
            held -= sizes.pop()
            frontier -= 1
            cursor = None
        elif op is Op.POP_HIDDEN:
            if stack[-1] != ("hidden", action.step) or len(stack) == 1:
                raise ValueError(f"bad free {action} (stack top {stack[-1]})")
            stack.pop()
            held -= sizes.pop()
        peak = max(peak, held)
        if held_after is not None:
            held_after.append(held)
    if frontier != 0 or len(stack) != 1:
        raise ValueError(f"schedule incomplete: frontier {frontier}, stack {stack}")
    return cost, peak


# --------------------------------------------------------------------------------------
# Planning from bytes.

def minimum_budget_bytes(hidden_bytes: int, internal_bytes: int) -> int:
    """The smallest budget any schedule fits: the start state plus working memory."""
    return 2 * hidden_bytes + internal_bytes


def plan_for_budget(
    seq_len: int,
    budget_bytes: int | str,
    hidden_bytes: int,
    internal_bytes: int,
    mode: str = "msm",
    max_units: int = MAX_UNITS,
    *,
    stored_internal_bytes: int | None = None,
    chained_internal_bytes: int | None = None,
    units_per_hidden: int = 2,
) -> Plan:
    """The cost-optimal plan whose bytes held for backward stay within ``budget_bytes``.

    The budget covers (i) stored states: hidden states of ``hidden_bytes`` each, internal
    states of ``stored_internal_bytes`` each (the step's saved tensors plus its output
    state; default ``internal_bytes + hidden_bytes``) or ``chained_internal_bytes`` when
    the step's input is held already (default: ``stored_internal_bytes``), the initial
    state included; and (ii) working memory: the cursor's hidden state plus the saved
    tensors of the step being back-propagated (``hidden_bytes + internal_bytes``). Sizes
    come from :func:`learners.bptt.measure_step_bytes`.

    Memory is discretised in units of ``1 / units_per_hidden`` hidden state, or coarser
    when the budget holds more than ``max_units`` of them; sizes are rounded *up* to whole
    units, so the plan stays within budget at some loss of optimality (coarse units bound
    the DP's work). Coarse units also round a state size badly (5.1 MB in 4.2 MB units
    costs 8.4 MB), so the planner also tries the units just above the smallest one that
    divide a state size evenly (:func:`_candidate_units`) and keeps the cheapest plan; a
    unit whose lower bound (:func:`cost_lower_bound`) cannot beat the best plan so far is
    not planned.

    Raises:
        BudgetTooSmallError: if the budget is below :func:`minimum_budget_bytes`.
    """
    budget = parse_bytes(budget_bytes)
    if hidden_bytes <= 0 or internal_bytes < 0:
        raise ValueError(f"need hidden_bytes > 0 and internal_bytes >= 0, got {hidden_bytes}, {internal_bytes}")
    stored = internal_bytes + hidden_bytes if stored_internal_bytes is None else stored_internal_bytes
    chained = stored if chained_internal_bytes is None else min(chained_internal_bytes, stored)
    if chained < hidden_bytes:
        raise ValueError(f"an internal state holds at least its output state: got {chained} < {hidden_bytes} bytes")
    working = hidden_bytes + internal_bytes
    minimum = minimum_budget_bytes(hidden_bytes, internal_bytes)
    if budget < minimum:
        raise BudgetTooSmallError(
            f"a memory budget of {budget} bytes is below the feasible minimum of {minimum} bytes "
            f"(initial state {hidden_bytes} B + working hidden state {hidden_bytes} B + one "
            f"step's internal state {internal_bytes} B); raise the budget to at least {minimum} bytes",
            minimum,
        )
    available = budget - working
    candidates = []
    for unit in _candidate_units(hidden_bytes, stored, chained, available, mode, max_units, units_per_hidden):
        hidden_units, internal_units, chained_units = (math.ceil(size / unit) for size in (hidden_bytes, stored, chained))
        # Beyond full-BPTT memory, more units change nothing: cap them to keep the tables small.
        # A unit below the smallest may leave part of the budget unused, beyond max_units.
        saturated = hidden_units + (seq_len - 1) * (internal_units if mode != "hsm" else hidden_units)
        memory_units = min(available // unit, saturated, max_units)
        if memory_units >= hidden_units:
            bound = cost_lower_bound(seq_len, memory_units, hidden_units, chained_units)
            candidates.append((bound, unit, memory_units, hidden_units, internal_units, chained_units))
    best: Plan | None = None
    for bound, unit, memory_units, hidden_units, internal_units, chained_units in sorted(candidates):
        if best is not None and bound >= best.cost:
            continue
        candidate = _plan_in_units(
            seq_len, memory_units, hidden_units, internal_units, mode, unit_bytes=unit, working_bytes=working,
            chained_units=chained_units, keep_tables=False,
        )
        if best is None or (candidate.cost, candidate.peak_bytes) < (best.cost, best.peak_bytes):
            best = candidate
    if best is None:  # unreachable: a unit of one hidden state always holds the start
        raise AssertionError(f"no memory unit holds the start state within {budget} bytes")
    return best


def _candidate_units(
    hidden_bytes: int, stored_bytes: int, chained_bytes: int, available_bytes: int, mode: str,
    max_units: int, units_per_hidden: int,
) -> list[int]:
    """Unit sizes (bytes) worth planning with: the finest that keeps the memory within
    ``max_units`` units and at least ``1 / units_per_hidden`` hidden state, and for each
    size a state can be stored at (hidden; stored and chained internal unless ``mode`` is
    ``hsm``), the least unit at or above it that the size fills exactly (up to a byte), or
    the size itself when it is smaller: within ``max_units`` of those, a plan holds as many
    states as in the smallest unit and reports their true size, or, where the budget holds
    more than plain BPTT, all of them."""
    smallest = max(math.ceil(hidden_bytes / units_per_hidden), math.ceil(available_bytes / max_units))
    sizes = (hidden_bytes,) if mode == "hsm" else (hidden_bytes, stored_bytes, chained_bytes)
    units = {smallest}
    for size in sizes:
        units.add(math.ceil(size / max(1, size // smallest)))
    return sorted(units)
