"""``engram plan``: what a config's unroll will hold for backward and recompute, before training.

It measures one step of the configured network at the configured batch, as the learner's
first update does (``learners/bptt/unroll.py``), and plans the unroll of
``learner.unroll_length + 1`` steps (the bootstrap step included) under
``learner.bptt.memory_budget``. The observations are zeros: only shapes matter to the sizes.
A memory core's fixed part is shown for a fresh memory and for a full one, since it grows
as the memory fills (the learner warns, as here, when the budget cannot hold a full one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engram import build
from engram.config import Config, ConfigError
from learners.bptt.meter import StepBytes
from learners.bptt.unroll import BudgetedUnroll, measure_step, step_slice
from learners.bptt_plan import Plan
from learners.learner import make_step_fn


@dataclass
class PlanPreview:
    name: str
    mode: str
    steps: int  # learner.unroll_length + 1
    batch: int
    hidden_bytes: int
    step_bytes: int  # what one step of plain BPTT keeps for backward (a chained internal state)
    full_bptt_bytes: int  # steps × step_bytes
    budget_bytes: int | None = None
    fixed_bytes_fresh: int | None = None  # in-place tables and their journal, fresh memory
    fixed_bytes_full: int | None = None  # the same, every row in use
    plan: Plan | None = None
    plan_seconds: float | None = None
    plan_units: int | None = None  # learner.bptt.plan_units
    held_back: bool = False  # a larger plan_units would store more steps
    least_cost: int | None = None  # fewest evaluations any schedule within the budget needs, counted in bytes

    @property
    def planned_bytes(self) -> int | None:
        return None if self.plan is None else self.plan.peak_bytes + (self.fixed_bytes_fresh or 0)


def preview(config: Config) -> PlanPreview:
    """Measure and plan (raises :class:`learners.bptt_plan.BudgetTooSmallError` with the
    minimum when the budget cannot hold a fresh memory's unroll)."""
    if config.run.kind != "rl":
        raise ConfigError(
            f"engram plan previews the RL learner's unroll; run.kind={config.run.kind} trains with full BPTT "
            "through its own trainer"
        )
    spec = build.probe_env(config)
    agent = build.agent_factory(config, spec)()
    batch, steps = config.learner.batch_size, config.learner.unroll_length + 1
    state0 = agent.initial_state(batch)
    first_step = {
        "obs": torch.zeros(1, batch, *spec.observation_shape, dtype=torch.uint8),
        "prev_action": torch.zeros(1, batch, dtype=torch.int64),
        "prev_reward": torch.zeros(1, batch),
        "first": torch.zeros(1, batch, dtype=torch.bool),
        "decisions": {},
    }
    step_fn = make_step_fn(agent)
    settings = config.learner.bptt
    if settings.mode == "full":
        sizes = measure_step(step_fn, state0, step_slice(first_step, 0), agent.parameters())
        return _preview(config, settings.mode, steps, batch, sizes)
    unroll = BudgetedUnroll(settings.mode, settings.budget_bytes, agent.parameters(), plan_units=settings.plan_units)
    journal = agent.open_journal(state0)
    try:
        started = time.perf_counter()
        plan = unroll.plan_for(step_fn, state0, first_step, steps, journal)
        seconds = time.perf_counter() - started
        sizes = unroll.step_bytes(steps)
        result = _preview(config, settings.mode, steps, batch, sizes)
        result.budget_bytes, result.plan, result.plan_seconds = unroll.budget_bytes, plan, seconds
        result.plan_units = settings.plan_units
        result.least_cost = unroll.least_cost(steps)
        result.held_back = unroll.held_back_by_plan_units(plan)
        if journal is not None:
            result.fixed_bytes_fresh = unroll.fixed_bytes
            result.fixed_bytes_full = unroll.step_bytes(steps, journal, journal.total_rows).fixed_bytes
        return result
    finally:
        if journal is not None:
            journal.close()


def _preview(config: Config, mode: str, steps: int, batch: int, sizes: StepBytes) -> PlanPreview:
    step = sizes.plain_step_bytes
    return PlanPreview(config.run.name, mode, steps, batch, sizes.hidden_bytes, step, steps * step)


def describe(result: PlanPreview, render_actions: int = 0) -> str:
    """The preview as lines of text (and the first ``render_actions`` actions of the plan)."""
    lines = [
        f"{result.name}: learner.bptt.mode {result.mode}, {result.steps} steps (unroll_length + 1), "
        f"batch {result.batch}",
        f"  a hidden state: {_size(result.hidden_bytes)}; one step keeps for backward: {_size(result.step_bytes)}",
        f"  full BPTT would hold about: {_size(result.full_bptt_bytes)}",
    ]
    if result.plan is None:
        return "\n".join(lines)
    lines.append(f"  budget: {_size(result.budget_bytes)}")
    if result.fixed_bytes_fresh is not None:
        lines.append(
            f"  fixed part (in-place tables and their journal): {_size(result.fixed_bytes_fresh)} with a fresh "
            f"memory, up to {_size(result.fixed_bytes_full)} with a full one"
        )
    plan = result.plan
    lines += [
        f"  plan: {plan.cost / plan.seq_len:.3f} forward evaluations per step "
        f"(any schedule within this budget needs at least {result.least_cost / plan.seq_len:.3f}), "
        f"{_size(result.planned_bytes)} planned, in {result.plan_seconds:.2f} s",
    ]
    if result.held_back:
        lines.append(
            f"  the plan uses all {result.plan_units} units of learner.bptt.plan_units: raising it lets the plan "
            "store more steps (planning time grows in proportion)"
        )
    if render_actions:
        lines.append(plan.render(max_actions=render_actions))
    return "\n".join(lines)


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit} ({nbytes:,} bytes)"
    return f"{nbytes:,} bytes"
