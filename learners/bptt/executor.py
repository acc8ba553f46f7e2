"""Executor for memory-efficient BPTT (Gruslys et al. 2016, arXiv:1606.03401).

:func:`checkpointed_unroll` runs ``step_fn`` over ``T`` steps and returns the per-step
outputs ``[T, ...]``; their backward recomputes segments as a :class:`Plan` from
:func:`learners.bptt_plan.plan` says, so that only the plan's checkpoints are held between
the forward and the backward pass. Gradients equal plain BPTT (same operations, only the
summation order of parameter gradients differs).

How it works
------------
1. *Forward pass*: the plan's actions up to its first backprop are run in plain Python,
   without a graph except where the plan stores an internal state (the step is run with
   grad and its graph is kept) and for the last step, whose graph is the first one the
   backward needs. Hidden-state checkpoints are detached copies of the state.
2. A custom :class:`torch.autograd.Function` takes the tensors that need gradients
   (``state0``'s float tensors, the parameters, input tensors that require grad) as its
   inputs and returns the stacked outputs and the final state. Its backward runs the rest
   of the plan: it recomputes steps with grad from checkpoints and, for each step from
   T-1 down to 0, calls :func:`torch.autograd.grad` on that step's graph with the incoming
   gradients (dL/d out_t and dL/d s_{t+1}), which yields dL/d s_t, the step's parameter
   gradients (summed here and returned from the Function, so both ``loss.backward()`` and
   ``torch.autograd.grad`` work) and dL/d x_t.
3. *Chains*: a step run with grad right from the output of a stored internal state (no
   recomputation in between) takes that output as its input without detaching it, so
   consecutive internal states form one graph, like a segment of plain BPTT. A backprop
   that reaches such a chain runs one :func:`torch.autograd.grad` over the whole chain
   instead of one per step: fewer engine calls and parameter-gradient sums, the same
   arithmetic and the same tensors held.
4. *Parameter gradients*: from the second engine call on, the running sums go into the call
   as one more root (:class:`_SeedGradients`), so the engine adds each call's parameter
   contributions into them in place instead of allocating a sum per call. Hooks registered
   on parameters with ``Tensor.register_hook`` are paused during these inner calls: they
   run once, on the total, when the outer backward accumulates what the Function returns.

Contract for ``step_fn(state, x_t) -> (new_state, out_t)``
-----------------------------------------------------------
* ``state``, ``x_t`` and ``out_t`` are nested dicts; state leaves may be non-tensors (ints
  and such pass through); ``out_t`` leaves are tensors.
* It must be deterministic given ``(state, x_t)`` and the torch RNG state: recomputation
  must reproduce the forward exactly. Cores that sample (STRAW's gate) must take the
  recorded decisions from ``x_t`` (replay). With ``preserve_rng_state=True`` (default)
  the CPU (and CUDA) RNG state is saved at each checkpoint and restored before recomputing
  from it, so dropout-like sampling also replays; the global RNG is left as after the
  forward pass.
* It must not modify its inputs in place.
* Tensors requiring grad that it uses must be in ``parameters`` (taken from the module when
  ``step_fn`` is an ``nn.Module`` or a bound method of one). A forgotten one raises.
* Double backward (``create_graph=True``) through the unroll is not supported.

State updated in place (SAM's memory)
-------------------------------------
A core that updates part of its state in place (SAM / SDNC: the memory, usage and link
tables, ``agents/sam/undo_log.py``) cannot be checkpointed by keeping references: every
state shares those tables. Such a core opens a *journal* on the state and the executor
takes it as ``journal`` (a :class:`Journal`: ``mark() -> position``, ``rewind(position)``,
``close()`` and ``tables``, the tensors changed in place). The journal records every
in-place change, with or without grad; the executor marks it with each checkpoint and
rewinds it on each RESTORE, so a recomputed segment starts from the tables as they were
at its checkpoint. ``tables`` pass through as non-differentiable state (no gradient flows
into them through the state; SAM's own Functions carry ∂L/∂M) and are never copied into a
checkpoint. After the backward pass the tables are back at their value before step 0 and
the journal is closed.

Memory accounting
-----------------
A :class:`learners.bptt.meter.SavedTensorMeter` given as ``meter`` counts the executor's
hidden-state checkpoints along with what autograd saves; the learner's planned unroll
(:mod:`learners.bptt.unroll`) uses it to report the peak it measured against the plan's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from learners.bptt.meter import SavedTensorMeter
from learners.bptt.step_values import (
    Path,
    StepFn,
    carries_gradient,
    cuda_devices,
    flatten,
    is_float,
    resolve_parameters,
    storage_key,
    unflatten,
)
from learners.bptt_plan import Op, Plan


class Journal(Protocol):
    """What the executor asks of a core's record of its in-place state changes (SAM's
    journal-mode :class:`agents.sam.undo_log.UndoLog`)."""

    tables: list[torch.Tensor]  # the state tensors the steps change in place

    def mark(self) -> Any:
        """The journal's position now: the tables as they are."""

    def rewind(self, position: Any) -> None:
        """Put the tables back as they were at ``position``."""

    def close(self) -> None:
        """Stop recording and let go of the tables."""


@dataclass
class _StepGraph:
    """One step run with grad: its leaves and results (its internal state lives in the graph)."""

    step: int
    state_in: dict[Path, Any]
    x_leaves: dict[Path, torch.Tensor]
    new_state: dict[Path, Any]
    outputs: dict[Path, torch.Tensor]
    linked: bool = False  # state_in is the previous step's graph output (not a detached leaf)


class _Checkpoint:
    """A stack entry: the hidden state ``s_position``, or a stored internal state of step
    ``position - 1`` (``graph``) whose output is that state."""

    __slots__ = ("position", "_state", "rng", "graph", "held", "mark")

    def __init__(
        self, position: int, state: dict[Path, Any] | None, rng: Any, graph: _StepGraph | None = None, held=(),
        mark: Any = None,
    ):
        self.position = position
        self.mark = mark  # the journal's position at this state, if there is a journal
        self._state = state  # detached; for an internal state, made from the graph on first use
        self.rng = rng  # None when the plan never restores this entry
        self.graph = graph
        self.held = held  # meter handles

    @property
    def state(self) -> dict[Path, Any]:
        if self._state is None:
            self._state = _detached(self.graph.new_state)
        return self._state


def _detached(flat: dict[Path, Any]) -> dict[Path, Any]:
    """The leaves cut from the graph. A tensor outside autograd stays the same object, so
    anything kept for it by identity (SAM's open undo log, LRU heap and index) stays with it."""
    return {p: (v.detach() if isinstance(v, torch.Tensor) and v.requires_grad else v) for p, v in flat.items()}


class _Machine:
    """Runs a plan's actions; the forward part on call, the rest inside backward."""

    def __init__(self, step_fn, plan_, state0, inputs, params, meter, preserve_rng_state, journal=None):
        self.step_fn = step_fn
        self.journal = journal
        self.start_mark = journal.mark() if journal is not None else None  # the tables before step 0
        self.in_place = {storage_key(t) for t in (journal.tables if journal is not None else ())}
        self.plan = plan_
        self.params = params
        self.meter = meter
        self.state0 = _detached(state0)
        self.state0_versions = {  # of the tensors that no journal covers
            p: v._version for p, v in self.state0.items()
            if isinstance(v, torch.Tensor) and storage_key(v) not in self.in_place
        }
        self.inputs = inputs  # flat {path: [T, ...]}
        self.input_steps = {p: v.detach().unbind(0) for p, v in inputs.items()}  # {path: T views}
        self.input_grad_paths = [p for p, v in inputs.items() if is_float(v) and v.requires_grad]
        self.state0_grad_paths = [p for p, v in state0.items() if self.differentiable(v) and v.requires_grad]
        self.preserve_rng_state = preserve_rng_state
        self.devices = cuda_devices(state0, inputs)
        self.calls = 0
        self.stack: list[_Checkpoint] = []
        self.cursor_position: int | None = None
        self.cursor_state: dict[Path, Any] | None = None
        self.pending: _StepGraph | None = None
        self.recorded: list[dict[Path, torch.Tensor] | None] = [None] * plan_.seq_len
        self.final_state: dict[Path, Any] | None = None
        self.next_action = 0
        self.restored = plan_.restored_pushes  # entries that need their RNG state (cached on the plan)

    def differentiable(self, value: Any) -> bool:
        return carries_gradient(value, self.in_place)

    def _mark(self) -> Any:
        return self.journal.mark() if self.journal is not None else None

    # -- running steps ------------------------------------------------------------------

    def _inputs_at(self, step: int) -> dict[Path, Any]:
        return {p: steps[step] for p, steps in self.input_steps.items()}

    def _x_with_leaves(self, step: int) -> tuple[dict[Path, Any], dict[Path, torch.Tensor]]:
        """Step ``step``'s inputs, those that need gradients replaced by fresh leaves."""
        x, leaves = self._inputs_at(step), {}
        for path in self.input_grad_paths:
            x[path] = leaves[path] = x[path].detach().requires_grad_()
        return x, leaves

    def _call(self, state: dict[Path, Any], x: dict[Path, Any]):
        self.calls += 1
        new_state, out = self.step_fn(unflatten(state), unflatten(x))
        return flatten(new_state, what="step_fn's new state"), flatten(out, what="step_fn's output")

    def _record(self, step: int, outputs: dict[Path, torch.Tensor]) -> None:
        if self.recorded is not None and self.recorded[step] is None:
            self.recorded[step] = {p: v.detach() for p, v in outputs.items()}

    def _advance(self, count: int) -> None:
        """Run ``count`` steps without grad. The state stays nested from one call to the
        next (flattened once, at the end): this loop is most of the recomputation."""
        state = unflatten(self.cursor_state)
        start = self.cursor_position
        with torch.no_grad():
            for step in range(start, start + count):
                state, out = self.step_fn(state, unflatten(self._inputs_at(step)))
                if not isinstance(state, (torch.Tensor, Mapping)):
                    flatten(state, what="step_fn's new state")  # raises, naming what to pass
                if self.recorded is not None:  # the forward pass; recomputation records nothing
                    self._record(step, flatten(out))
        self.calls += count
        self.cursor_state = flatten(state)
        self.cursor_position = start + count

    def _run_with_grad(self) -> _StepGraph:
        """Run the cursor's step with grad, chained to the stored internal state at the top
        of the stack when the cursor is that state's output. Grad mode must be on."""
        step = self.cursor_position
        top = self.stack[-1] if self.stack else None
        previous = top.graph if top is not None and top.graph is not None and top.position == step else None
        state_in = {}
        for path, value in self.cursor_state.items():
            if not self.differentiable(value):
                state_in[path] = value
            elif previous is not None and previous.new_state[path].requires_grad:
                state_in[path] = previous.new_state[path]
            else:
                state_in[path] = value.detach().requires_grad_()
        x, x_leaves = self._x_with_leaves(step)
        new_state, out = self._call(state_in, x)
        self._record(step, out)
        return _StepGraph(step, state_in, x_leaves, new_state, out, linked=previous is not None)

    def _hold(self, tensors: Iterable[Any]) -> list:
        if self.meter is None:
            return []
        return [self.meter.hold(t) for t in tensors if self.differentiable(t)]

    def _rng(self, index: int):
        """The RNG state for the entry pushed by action ``index``, if it is ever restored."""
        if not self.preserve_rng_state or index not in self.restored:
            return None
        cuda = [torch.cuda.get_rng_state(d) for d in self.devices]
        return torch.get_rng_state(), cuda

    def _set_rng(self, rng) -> None:
        if rng is None:
            return
        cpu, cuda = rng
        torch.set_rng_state(cpu)
        for device, state in zip(self.devices, cuda):
            torch.cuda.set_rng_state(state, device)

    # -- the plan's actions -------------------------------------------------------------

    def run_forward(self) -> None:
        """Actions up to the first backprop; leaves that step's graph pending."""
        self.stack.append(_Checkpoint(0, self.state0, self._rng(-1), mark=self.start_mark))
        self.cursor_position, self.cursor_state = 0, self.state0
        stop = self.plan.first_backprop_index
        with torch.enable_grad():
            for index in range(stop):
                self._execute(index)
            self.pending = self._run_with_grad()
        self.next_action = stop + 1
        self.final_state = _detached(self.pending.new_state)
        self._check_parameters(self.pending)
        self._check_state_unchanged()

    def _check_state_unchanged(self) -> None:
        """Raise if a step changed a tensor of ``state0`` in place outside the journal:
        recomputing from a checkpoint would then start from the wrong values."""
        for path, version in self.state0_versions.items():
            if self.state0[path]._version != version:
                raise ValueError(
                    f"step_fn changed the state tensor {'.'.join(map(str, path))} in place, so checkpoints "
                    "cannot hold it; a core that updates its state in place must pass its journal "
                    "(journal=core.open_journal(state0), see learners.bptt.executor)"
                )

    def _execute(self, index: int) -> None:
        action = self.plan.actions[index]
        op = action.op
        if op is Op.RESTORE:
            top = self.stack[-1]
            self.cursor_position, self.cursor_state = top.position, top.state
            self._set_rng(top.rng)
            if self.journal is not None:
                self.journal.rewind(top.mark)
        elif op is Op.ADVANCE:
            self._advance(action.count)
        elif op is Op.PUSH_HIDDEN:
            state = _detached(self.cursor_state)
            self.stack.append(_Checkpoint(
                self.cursor_position, state, self._rng(index), held=self._hold(state.values()), mark=self._mark()
            ))
        elif op is Op.PUSH_INTERNAL:
            graph = self._run_with_grad()
            # The cursor keeps the graph's output: a chained step reads it through the graph,
            # an ADVANCE runs without grad, and a PUSH_HIDDEN or RESTORE detaches it.
            self.cursor_position, self.cursor_state = graph.step + 1, graph.new_state
            held = self._hold(graph.new_state.values())
            self.stack.append(_Checkpoint(graph.step + 1, None, self._rng(index), graph=graph, held=held, mark=self._mark()))
        elif op is Op.POP_HIDDEN:
            self.stack.pop()
        else:
            raise AssertionError(f"{op} is run by run_backward")

    def _backprop_chain(self, graph: _StepGraph, index: int, gradients: _Gradients) -> int:
        """Back-propagate ``graph`` together with the stored internal states it is chained
        to, whose BACKPROP_INTERNAL actions follow at ``index``; returns the next index."""
        chain, handles = [graph], []
        actions = self.plan.actions
        while chain[-1].linked and index < len(actions) and actions[index].op is Op.BACKPROP_INTERNAL:
            checkpoint = self.stack.pop()
            if checkpoint.graph is None or checkpoint.graph.step != chain[-1].step - 1:
                raise RuntimeError(f"plan does not back-propagate the chain of step {chain[-1].step} in order")
            chain.append(checkpoint.graph)
            handles.append(checkpoint.held)
            index += 1
        gradients.backprop(chain)
        return index

    def run_backward(self, gradients: _Gradients) -> None:
        pending, self.pending = self.pending, None
        actions = self.plan.actions
        with torch.enable_grad():  # recomputation builds graphs; ADVANCE switches it off
            index = self._backprop_chain(pending, self.next_action, gradients)
            del pending
            while index < len(actions):
                op = actions[index].op
                if op is Op.BACKPROP_STEP:
                    graph = self._run_with_grad()
                    self.cursor_position = self.cursor_state = None
                    index = self._backprop_chain(graph, index + 1, gradients)
                elif op is Op.BACKPROP_INTERNAL:
                    index = self._backprop_chain(self.stack.pop().graph, index + 1, gradients)
                else:
                    self._execute(index)
                    index += 1
        self.stack.clear()
        self.close_journal(rewind=True)

    def close_journal(self, rewind: bool) -> None:
        """End the journal, first putting the tables back at their value before step 0."""
        if self.journal is not None:
            if rewind:
                self.journal.rewind(self.start_mark)
            self.journal.close()
            self.journal = None

    def _check_parameters(self, graph: _StepGraph) -> None:
        """Raise if the step reached a tensor requiring grad that is not a declared input."""
        allowed = {id(t) for t in self.params}
        allowed |= {id(v) for v in graph.state_in.values()} | {id(v) for v in graph.x_leaves.values()}
        stop_nodes = {t.grad_fn for t in self.params if t.grad_fn is not None}
        stop_nodes |= {v.grad_fn for v in graph.state_in.values() if is_float(v) and v.grad_fn is not None}
        roots = [v for v in list(graph.new_state.values()) + list(graph.outputs.values()) if is_float(v)]
        frontier = [v.grad_fn for v in roots if v.grad_fn is not None]
        seen = set()
        while frontier:
            node = frontier.pop()
            if node is None or node in seen or node in stop_nodes:
                continue
            seen.add(node)
            variable = getattr(node, "variable", None)
            if variable is not None and id(variable) not in allowed:
                raise ValueError(
                    f"step_fn uses a tensor requiring grad (shape {tuple(variable.shape)}) that is not "
                    "in `parameters`; pass parameters=... to checkpointed_unroll"
                )
            frontier.extend(next_node for next_node, _ in node.next_functions)


class _Gradients:
    """Walks gradients backwards through time: dL/ds_{t+1} -> dL/ds_t, summing parameter grads."""

    def __init__(self, machine: _Machine, output_grads, final_state_grads):
        self.machine = machine
        self.output_grads = {p: g for p, g in output_grads.items() if g is not None}  # {path: [T, ...]}
        self.state_grads = final_state_grads  # {path: tensor or None}: dL/ds_T
        self.param_grads: list[torch.Tensor | None] = [None] * len(machine.params)
        self.input_grads = {p: None for p in machine.input_grad_paths}
        self.next_step = machine.plan.seq_len - 1

    def backprop(self, chain: list[_StepGraph]) -> None:
        """Back-propagate consecutive steps ``chain`` (latest first; each but the last
        reads the next one's output state) in one call."""
        for graph in chain:
            if graph.step != self.next_step:
                raise RuntimeError(f"backprop of step {graph.step}, expected {self.next_step}")
            self.next_step -= 1
        roots, root_grads = [], []
        first = chain[-1]
        for path, grads in self.output_grads.items():
            values = [graph.outputs[path] for graph in reversed(chain)]  # ascending steps
            if all(value.requires_grad for value in values):
                # One root per chain: autograd checks each root's shape in Python, which
                # for long chains costs more than this stack; its backward hands each
                # step exactly its slice of the gradient.
                roots.append(values[0] if len(values) == 1 else torch.stack(values))
                root_grads.append(grads[first.step] if len(values) == 1 else grads[first.step : chain[0].step + 1])
            else:
                for graph, value in zip(reversed(chain), values):
                    if value.requires_grad:
                        roots.append(value)
                        root_grads.append(grads[graph.step])
        for path, value in chain[0].new_state.items():
            grad = self.state_grads.get(path)
            if grad is not None and isinstance(value, torch.Tensor) and value.requires_grad:
                roots.append(value)
                root_grads.append(grad)
        state_paths = [p for p, v in first.state_in.items() if is_float(v) and v.requires_grad]
        params = self.machine.params
        targets = [first.state_in[p] for p in state_paths] + list(params)
        targets += [graph.x_leaves[p] for graph in chain for p in self.machine.input_grad_paths]
        seeded = [g is not None for g in self.param_grads]
        if roots and any(seeded):
            # The running sums enter the engine as the chain's first parameter gradients;
            # it adds the chain's own contributions into them in place (see _SeedGradients),
            # which needs the handover list to hold the only reference to them.
            roots.append(_SeedGradients.apply([self.param_grads], *params))
            root_grads.append(torch.zeros_like(roots[-1]))
            self.param_grads = [None] * len(params)
        if roots:
            grads = torch.autograd.grad(roots, targets, root_grads, allow_unused=True)
        else:
            grads = [None] * len(targets)
        count = len(state_paths)
        self.state_grads = dict(zip(state_paths, grads[:count]))
        for index, grad in enumerate(grads[count : count + len(params)]):
            if grad is not None:
                # A seeded sum came back from the engine and is ours alone; a first
                # contribution may be shared by the engine, so Σ_t dL/dθ_t starts from a copy.
                self.param_grads[index] = grad if seeded[index] else grad.clone()
        input_grads = iter(grads[count + len(params) :])
        for graph in chain:
            for path in self.machine.input_grad_paths:
                grad = next(input_grads)
                if grad is not None:
                    if self.input_grads[path] is None:
                        self.input_grads[path] = torch.zeros_like(self.machine.inputs[path])
                    self.input_grads[path][graph.step] = grad


class _SeedGradients(torch.autograd.Function):
    """Hands the running parameter-gradient sums to the engine as extra contributions.

    An engine call sums each parameter's contributions in an input buffer, in place when it
    holds the only reference to one of the two tensors it adds. An LSTM weight's
    contributions are transposed views, so the first sum of every call is a fresh tensor,
    which the executor then added into its running sum: two extra passes over each weight
    per chain, where full BPTT makes none. This root's backward gives up its only reference
    to each running sum, so the engine adds the chain's contributions into it in place and
    returns it. ``forward`` takes ``[sums]`` (a list its backward empties) and the
    parameters; ``None`` sums contribute nothing."""

    @staticmethod
    def forward(ctx, handover: list, *params):
        ctx.handover = handover
        return params[0].new_zeros(())

    @staticmethod
    def backward(ctx, _):
        sums = ctx.handover.pop()
        ctx.handover = None
        return (None, *sums)


@contextlib.contextmanager
def _tensor_hooks_paused(tensors: Iterable[torch.Tensor]):
    """Pause hooks registered with ``Tensor.register_hook`` on ``tensors``.

    The executor's inner engine calls (the whole of its backward) see parts of a parameter's
    gradient; its hooks must see the total once, when the outer backward accumulates what the
    unroll returns (as in plain BPTT). The hook dictionary is emptied and refilled in place,
    so handles stay valid."""
    paused = []
    for tensor in tensors:
        hooks = tensor._backward_hooks
        if hooks:
            paused.append((hooks, list(hooks.items())))
            hooks.clear()
    try:
        yield
    finally:
        for hooks, items in paused:
            hooks.update(items)


class _UnrollFunction(torch.autograd.Function):
    """Ties the executor's outputs to its differentiable inputs; backward runs the plan."""

    @staticmethod
    def forward(ctx, machine: _Machine, output_paths, final_paths, *differentiable_inputs):
        ctx.set_materialize_grads(False)
        ctx.machine = machine
        ctx.output_paths, ctx.final_paths = output_paths, final_paths
        stacked = [torch.stack([machine.recorded[t][p] for t in range(machine.plan.seq_len)]) for p in output_paths]
        final = [machine.final_state[p].clone() for p in final_paths]
        return (*stacked, *final)

    @staticmethod
    def backward(ctx, *grads):
        machine: _Machine = ctx.machine
        if machine is None:
            raise RuntimeError("checkpointed_unroll supports one backward pass (retain_graph is not supported)")
        ctx.machine = None
        output_grads = dict(zip(ctx.output_paths, grads[: len(ctx.output_paths)]))
        final_grads = dict(zip(ctx.final_paths, grads[len(ctx.output_paths) :]))
        gradients = _Gradients(machine, output_grads, final_grads)
        with torch.random.fork_rng(devices=machine.devices, enabled=machine.preserve_rng_state):
            with _tensor_hooks_paused(machine.params):
                machine.run_backward(gradients)
        state_grads = [gradients.state_grads.get(p) for p in machine.state0_grad_paths]
        input_grads = [gradients.input_grads[p] for p in machine.input_grad_paths]
        return (None, None, None, *state_grads, *gradients.param_grads, *input_grads)


def _full_unroll(step_fn, state0, inputs, seq_len):
    """Plain BPTT: every step's graph is kept."""
    state = flatten(state0, what="state0")
    outputs = []
    for t in range(seq_len):
        new_state, out = step_fn(unflatten(state), unflatten({p: v[t] for p, v in inputs.items()}))
        state = flatten(new_state, what="step_fn's new state")
        outputs.append(flatten(out, what="step_fn's output"))
    stacked = {p: torch.stack([o[p] for o in outputs]) for p in outputs[0]}
    return unflatten(stacked), unflatten(state)


def checkpointed_unroll(
    step_fn: StepFn,
    state0: Mapping,
    inputs: Mapping,
    plan: Plan | None,
    *,
    parameters: Iterable[torch.Tensor] | None = None,
    preserve_rng_state: bool = True,
    meter: SavedTensorMeter | None = None,
    journal: Any = None,
) -> tuple[dict, dict]:
    """Run ``step_fn`` over time with a memory-bounded backward (module docstring).

    Args:
        step_fn: ``step_fn(state, x_t) -> (new_state, out_t)``, each a tensor or a nested dict
            of tensors (tuples and lists are refused with a message: wrap them in a dict).
        state0: the state before step 0 (tensor leaves ``[B, ...]``; other leaves pass).
        inputs: a time-major tensor ``[T, B, ...]`` or a nested dict of them; ``x_t`` is ``inputs[t]``.
        plan: a :class:`Plan` for ``T`` steps, or ``None`` for plain BPTT.
        parameters: the tensors requiring grad that ``step_fn`` uses besides the state and
            inputs; default: ``step_fn``'s parameters if it is an ``nn.Module`` or a bound
            method of one.
        preserve_rng_state: save/restore the RNG at checkpoints so recomputation replays
            random draws exactly.
        meter: if given, the executor registers its hidden-state checkpoints with it.
        journal: for a step that updates part of its state in place, the journal the core
            opened on ``state0`` (module docstring); closed when the backward pass ends.

    Returns:
        ``(outputs, final_state)``: ``outputs`` has ``out_t``'s structure with leaves
        stacked ``[T, B, ...]``; both are differentiable w.r.t. ``state0``, the parameters
        and inputs that require grad. ``step_fn`` is called ``plan.cost`` times over
        forward and backward (``T`` times for ``plan=None`` or when grad is disabled).
    """
    inputs_flat = flatten(inputs, what="inputs")
    if not inputs_flat:
        raise ValueError("inputs must contain at least one [T, ...] tensor")
    lengths = {v.shape[0] for v in inputs_flat.values()}
    if len(lengths) != 1:
        raise ValueError(f"all inputs must share the time dimension, got lengths {sorted(lengths)}")
    (seq_len,) = lengths
    if plan is None and journal is not None:
        raise ValueError("a journal is for checkpointed plans; plain BPTT reverts in-place state in its own backward")
    if plan is None or not torch.is_grad_enabled():  # no backward: nothing to checkpoint
        unrolled = _full_unroll(step_fn, state0, inputs_flat, seq_len)
        if journal is not None:
            journal.close()
        return unrolled
    if plan.seq_len != seq_len:
        raise ValueError(f"plan is for T={plan.seq_len} steps but inputs have T={seq_len}")
    params = resolve_parameters(step_fn, parameters)
    state0_flat = flatten(state0, what="state0")
    machine = _Machine(step_fn, plan, state0_flat, inputs_flat, params, meter, preserve_rng_state, journal)
    machine.run_forward()

    recorded = machine.recorded
    output_paths = list(recorded[0])
    float_outputs = [p for p in output_paths if is_float(recorded[0][p])]
    other_outputs = {p: torch.stack([recorded[t][p] for t in range(seq_len)]) for p in output_paths if p not in float_outputs}
    final_float = [p for p, v in machine.final_state.items() if machine.differentiable(v)]
    differentiable = [state0_flat[p] for p in machine.state0_grad_paths] + params
    differentiable += [inputs_flat[p] for p in machine.input_grad_paths]

    if differentiable:
        results = _UnrollFunction.apply(machine, float_outputs, final_float, *differentiable)
    else:
        machine.pending = None
        machine.stack.clear()
        machine.close_journal(rewind=False)  # nothing will be back-propagated: keep the tables at step T
        results = [torch.stack([recorded[t][p] for t in range(seq_len)]) for p in float_outputs]
        results += [machine.final_state[p] for p in final_float]
    machine.recorded = None  # the stacked copies are all that is kept
    outputs = dict(zip(float_outputs, results[: len(float_outputs)]))
    outputs.update(other_outputs)
    final_state = dict(machine.final_state)
    final_state.update(zip(final_float, results[len(float_outputs) :]))
    outputs = {p: outputs[p] for p in output_paths}
    return unflatten(outputs), unflatten(final_state)
