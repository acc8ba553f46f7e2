"""The learner's unroll: how it runs the agent over a batch's steps.

:class:`PlainUnroll` is plain BPTT, every step's graph kept for the backward pass (the
executor with no plan). :class:`BudgetedUnroll` follows a checkpointing plan under a memory
budget (Gruslys et al. 2016, ``learners/bptt_plan.py``): the first unroll of each length
measures one step of the real network with saved-tensor hooks (hidden-state bytes and the
bytes a step keeps for its backward; the larger of a step with and one without episode
starts), plans the cheapest schedule that fits ``budget_bytes``, and caches it. The
executor's forward keeps only the plan's checkpoints; the loss over the stacked per-step
outputs then injects each step's gradient into the checkpointed backward, so an unroll of
thousands of steps never holds its whole graph.

A core that updates state in place (SAM, SDNC) opens a journal on each unroll's start
state (``open_journal``); its tables and the journal's bytes over the unroll are a fixed
part of the budget, and the plan gets the rest. That part grows with the rows in use at the
unroll's start (a reset may clear them), so it is reckoned for the rows in use rounded up
to the next sixteenth of the memory, and the unroll is planned again, once per sixteenth,
as the memory fills.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator

from typing import Any, Protocol

import torch

from learners.bptt.executor import Journal, checkpointed_unroll
from learners.bptt.meter import SavedTensorMeter, StepBytes, measure_step_bytes
from learners.bptt.budget import MAX_UNITS, MODES
from learners.bptt_plan import (
    BudgetTooSmallError,
    Plan,
    cost_lower_bound,
    minimum_budget_bytes,
    plan_for_budget,
)


log = logging.getLogger("engram.bptt")

RESERVE_STEPS = 16  # the rows reserved for resets are a multiple of (all rows) / RESERVE_STEPS


def plan_within_budget(
    mode: str, seq_len: int, budget_bytes: int, step_bytes: StepBytes, max_units: int = MAX_UNITS,
) -> Plan:
    """:func:`learners.bptt_plan.plan_for_budget` for measured step sizes: the part held
    whatever the plan (``step_bytes.fixed_bytes``) comes off the budget first, and a budget
    too small names the total it needs."""
    if mode not in MODES:
        raise ValueError(f"a planned unroll's mode must be one of {', '.join(MODES)}, got {mode!r}")
    budget, fixed = _whole_bytes(budget_bytes), step_bytes.fixed_bytes
    try:
        return plan_for_budget(
            seq_len, max(budget - fixed, 0), step_bytes.hidden_bytes, step_bytes.internal_bytes, mode=mode,
            max_units=max_units,
            stored_internal_bytes=step_bytes.stored_internal_bytes,
            chained_internal_bytes=step_bytes.chained_internal_bytes,
        )
    except BudgetTooSmallError as error:
        if not fixed:
            raise
        minimum = error.minimum_bytes + fixed
        raise BudgetTooSmallError(
            f"a memory budget of {budget} bytes is below the feasible minimum of {minimum} bytes: "
            f"{fixed} B are held whatever the plan (state updated in place and its journal over "
            f"{seq_len} steps), and the plan needs at least {error.minimum_bytes} B more; "
            f"raise the budget to at least {minimum} bytes",
            minimum,
        ) from None


class Unroll(Protocol):
    """How the learner runs the agent over a batch's steps: :class:`PlainUnroll` or
    :class:`BudgetedUnroll`."""

    def __call__(self, step_fn, state0, inputs: dict) -> tuple[dict[str, torch.Tensor], Any]:
        """``(outputs [T, ...], final_state)`` of ``step_fn`` over ``inputs`` ``[T, B, ...]``."""

    def backward_context(self) -> contextlib.AbstractContextManager:
        """The context the loss's backward pass runs in."""

    def metrics(self) -> dict[str, float]:
        """Scalars about the last unroll, for telemetry."""


class PlainUnroll:
    """Plain BPTT: every step's graph kept for the backward pass."""

    def __call__(self, step_fn, state0, inputs: dict) -> tuple[dict[str, torch.Tensor], Any]:
        return checkpointed_unroll(step_fn, state0, inputs, None)

    def backward_context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def metrics(self) -> dict[str, float]:
        return {}


class BudgetedJournal(Journal, Protocol):
    """A :class:`learners.bptt.executor.Journal` that also reports what it holds, so that
    :class:`BudgetedUnroll` can reckon it into the budget (SAM's journal-mode undo log)."""

    total_rows: int  # the rows of each table, all sequences
    rows_in_use: int  # of those, the rows a reset may have to log
    rows_touched: int  # rows read or written so far
    table_bytes: int  # the tables' own bytes
    peak_bytes: int  # the most the journal held at once

    def stored_bytes(self) -> int:
        """Bytes the journal holds now."""

    def bound_bytes(self, steps: int, logged_per_step: int, rows_per_step: int, rows_in_use: int | None = None) -> int:
        """The most the tables and the journal can hold over ``steps`` steps, with
        ``rows_in_use`` rows (default: ``self.rows_in_use``) that a reset may log."""

    def forget_choices_after(self, position: Any) -> None:
        """Forget the choices replayed since ``position`` (after a trial step)."""


def _whole_bytes(budget_bytes) -> int:
    try:
        budget_bytes = operator.index(budget_bytes)
    except TypeError:
        raise TypeError(
            f"budget_bytes must be a whole number of bytes, got {budget_bytes!r} "
            "(learners.bptt.budget.parse_bytes reads strings such as '2GiB')"
        ) from None
    if budget_bytes <= 0:
        raise ValueError(f"budget_bytes must be positive, got {budget_bytes}")
    return budget_bytes


def measure_step(step_fn, state0, x0: dict, parameters) -> StepBytes:
    """A step's sizes, whatever ``x0`` holds: the larger of a step where no sequence starts
    an episode and one where every sequence does. A step that starts an episode reads a
    fresh state, so it shares less with the step before it (a larger chained internal
    state)."""
    return _largest([measure_step_bytes(step_fn, state0, x, parameters) for x in _episode_start_variants(x0)])


def _episode_start_variants(x: dict) -> list[dict]:
    """Step inputs ``x`` with no sequence starting an episode (``first`` all false), then
    with every sequence starting one; ``[x]`` for inputs without ``first``."""
    first = x.get("first")
    if not isinstance(first, torch.Tensor):
        return [x]
    return [{**x, "first": torch.zeros_like(first)}, {**x, "first": torch.ones_like(first)}]


def _largest(sizes: list[StepBytes]) -> StepBytes:
    return StepBytes(*(max(getattr(s, f.name) for s in sizes) for f in dataclasses.fields(StepBytes)))


def step_slice(inputs: dict, t: int) -> dict:
    """``inputs`` ``[T, B, ...]`` (nested one level) -> step ``t``'s ``[B, ...]``."""
    return {k: ({n: v[t] for n, v in x.items()} if isinstance(x, dict) else x[t]) for k, x in inputs.items()}


class BudgetedUnroll:
    """``unroll(step_fn, state0, inputs) -> (outputs [T, ...], final_state)``.

    Args:
        mode: ``hsm``, ``ism`` or ``msm``.
        budget_bytes: the bytes the unroll may hold for backward (the config parses
            ``learner.bptt.memory_budget`` once: ``BPTTConfig.budget_bytes``).
        parameters: the network's parameters (excluded from the byte counts).
        measure_every: meter the bytes held for backward on the first unroll and on every
            ``measure_every``-th after it. The meter runs Python on every saved tensor
            (about 7% of an Atari unroll and backward at batch 8), so the unrolls in between run
            without it; ``metrics()`` reports the latest measurement.
        open_journal: ``open_journal(state0) -> BudgetedJournal or None``, for cores that
            update their state in place (``Agent.open_journal``); ``None`` for cores that do not.
        plan_units: the most memory units the planner divides the budget into
            (``max_units`` of :func:`learners.bptt_plan.plan_for_budget`).
    """

    def __init__(
        self, mode: str, budget_bytes: int, parameters, measure_every: int = 1, open_journal=None,
        plan_units: int = MAX_UNITS,
    ):
        if mode not in MODES:
            raise ValueError(f"budgeted unroll mode must be one of {', '.join(MODES)}, got {mode!r}")
        if measure_every < 1:
            raise ValueError(f"measure_every must be >= 1, got {measure_every}")
        self.mode = mode
        self.budget_bytes = _whole_bytes(budget_bytes)
        self.parameters = list(parameters)
        self.measure_every = measure_every
        self.open_journal = open_journal
        self.plan_units = plan_units
        self.journal: BudgetedJournal | None = None  # the latest unroll's, kept for its byte counts
        self.fixed_bytes = 0
        self._sizes: dict[int, StepBytes] = {}  # per unroll length, fixed part excluded
        self._journal_rates: dict[int, tuple[int, int]] = {}  # per length: logged bytes and rows per step
        self._plans: dict[tuple[int, int], Plan] = {}  # per (length, rows reserved for resets)
        self.meter: SavedTensorMeter | None = None  # set during a metered unroll only
        self.measured_peak_bytes: int | None = None
        self.unrolls = 0
        self.plan: Plan | None = None

    def plan_for(self, step_fn, state0, inputs, length: int, journal: BudgetedJournal | None = None) -> Plan:
        """The plan an unroll of ``length`` steps from ``state0`` gets (``inputs`` need only
        their first step), with ``journal`` the core's on ``state0``; sets ``fixed_bytes``.
        The first call for a length measures a step (``step_bytes``)."""
        if length not in self._sizes:
            self._sizes[length] = self._measure(step_fn, state0, step_slice(inputs, 0), journal, length)
            if journal is not None:
                self._warn_if_a_full_memory_will_not_fit(journal, length)
        reserved = 0 if journal is None else self._reserved_rows(journal)
        sizes = self.step_bytes(length, journal, reserved)
        self.fixed_bytes = sizes.fixed_bytes
        if (length, reserved) not in self._plans:
            plan = self._plans[length, reserved] = plan_within_budget(
                self.mode, length, self.budget_bytes, sizes, self.plan_units
            )
            if self.held_back_by_plan_units(plan):
                log.warning(
                    "learner.bptt.plan_units (%d) holds this plan back: %.3f forward evaluations per step where "
                    "the budget allows %.3f; raising it lets the plan store more steps (planning takes longer)",
                    self.plan_units, plan.cost / length, self.least_cost(length) / length,
                )
        return self._plans[length, reserved]

    def least_cost(self, length: int) -> int:
        """The fewest evaluations any schedule of ``length`` steps could need within the
        budget less the current fixed part (:func:`learners.bptt_plan.cost_lower_bound`,
        counted in bytes)."""
        step = self._sizes[length].plain_step_bytes
        return cost_lower_bound(length, max(self.budget_bytes - self.fixed_bytes, 0), 0, step)

    def held_back_by_plan_units(self, plan: Plan) -> bool:
        """Whether the plan fills ``plan_units`` and any schedule could save more than 1% of
        the steps' evaluations within the budget: a larger cap would store more steps."""
        slack = plan.cost - self.least_cost(plan.seq_len)
        return plan.memory_units >= self.plan_units - 1 and slack > plan.seq_len // 100

    @staticmethod
    def _reserved_rows(journal: BudgetedJournal) -> int:
        """The rows in use at the unroll's start, rounded up to a multiple of 1/RESERVE_STEPS
        of all rows, so that the plan changes at most RESERVE_STEPS times as the memory fills."""
        rows = journal.total_rows
        step = -(-rows // RESERVE_STEPS)
        return min(rows, -(-journal.rows_in_use // step) * step)

    def step_bytes(self, length: int, journal: BudgetedJournal | None = None, reserved_rows: int = 0) -> StepBytes:
        """The measured step sizes for unrolls of ``length`` steps, with the fixed part for
        ``journal``'s tables and ``reserved_rows`` rows reserved for resets."""
        sizes = self._sizes[length]
        if journal is None:
            return sizes
        logged, rows = self._journal_rates[length]
        return dataclasses.replace(sizes, fixed_bytes=journal.bound_bytes(length, logged, rows, reserved_rows))

    def _warn_if_a_full_memory_will_not_fit(self, journal: BudgetedJournal, length: int) -> None:
        """Say now, not hours later, if the budget cannot hold the fixed part of a full memory."""
        sizes = self._sizes[length]
        every_row = journal.total_rows
        least_plan = minimum_budget_bytes(sizes.hidden_bytes, sizes.internal_bytes)
        empty, full = (self.step_bytes(length, journal, rows).fixed_bytes for rows in (0, every_row))
        if self.budget_bytes >= full + least_plan:
            return
        rows_that_fit = max(0, (self.budget_bytes - least_plan - empty) * every_row // (full - empty))
        log.warning(
            "learner.bptt.memory_budget (%d bytes) holds the %d memory rows in use now, but a full memory (%d rows) "
            "needs at least %d bytes; with more than about %d rows in use at an unroll's start, the update will stop "
            "with an error that names the budget it needs",
            self.budget_bytes, journal.rows_in_use, every_row, full + least_plan, rows_that_fit,
        )

    def _measure(self, step_fn, state0, x0, journal, length: int) -> StepBytes:
        """:func:`measure_step`; with a journal, its rates come from the step without episode
        starts: a reset's entries are covered by the reserve and the doubled log
        (``UndoLog.bound_bytes``)."""
        if journal is None:
            return measure_step(step_fn, state0, x0, self.parameters)
        return _largest([
            self._measure_with_journal(step_fn, state0, x, journal, length, rates=index == 0)
            for index, x in enumerate(_episode_start_variants(x0))
        ])

    def _measure_with_journal(self, step_fn, state0, x0, journal, length: int, rates: bool) -> StepBytes:
        """Step sizes and, if ``rates``, the journal's bytes and rows per step
        (``_journal_rates``), from two trial steps (the larger counts), after which the
        tables are rewound and the steps' choices forgotten."""
        mark = journal.mark()
        logged = [(journal.stored_bytes(), journal.rows_touched)]

        def counted(state, x):
            result = step_fn(state, x)
            logged.append((journal.stored_bytes(), journal.rows_touched))
            return result

        sizes = measure_step_bytes(counted, state0, x0, self.parameters, in_place=journal.tables)
        journal.rewind(mark)
        journal.forget_choices_after(mark)
        if rates:
            per_step = max(after[0] - before[0] for before, after in zip(logged, logged[1:]))
            rows_per_step = max(after[1] - before[1] for before, after in zip(logged, logged[1:]))
            self._journal_rates[length] = (per_step, rows_per_step)
        return sizes

    def __call__(self, step_fn, state0, inputs):
        length = next(iter(v for v in inputs.values() if isinstance(v, torch.Tensor))).shape[0]
        journal = self.journal = self.open_journal(state0) if self.open_journal is not None else None
        try:
            self.plan = self.plan_for(step_fn, state0, inputs, length, journal)
        except Exception:
            if journal is not None:
                journal.close()
            raise
        self.meter = None
        if self.unrolls % self.measure_every == 0:
            leaves = [v for x in inputs.values() for v in (x.values() if isinstance(x, dict) else [x])]
            self.meter = SavedTensorMeter(exclude=leaves + self.parameters)
        self.unrolls += 1
        with self.meter or contextlib.nullcontext():
            return checkpointed_unroll(
                step_fn, state0, inputs, self.plan, parameters=self.parameters, meter=self.meter, journal=journal
            )

    @contextlib.contextmanager
    def backward_context(self):
        """Wrap the loss's backward in this so a metered unroll's peak covers recomputation."""
        with self.meter or contextlib.nullcontext():
            yield
        if self.meter is not None:
            self.measured_peak_bytes = self.meter.peak_bytes
            if self.journal is not None:  # an upper bound: the two peaks need not coincide
                self.measured_peak_bytes += self.journal.table_bytes + self.journal.peak_bytes

    def metrics(self) -> dict[str, float]:
        if self.plan is None:
            return {}
        metrics = {
            "bptt/recompute_ratio": self.plan.cost / self.plan.seq_len,
            "bptt/planned_bytes": float(self.plan.peak_bytes + self.fixed_bytes),
            "bptt/budget_bytes": float(self.budget_bytes),
        }
        if self.fixed_bytes:
            metrics["bptt/fixed_bytes"] = float(self.fixed_bytes)
        if self.measured_peak_bytes is not None:
            metrics["bptt/measured_peak_bytes"] = float(self.measured_peak_bytes)
        return metrics
