"""Counting the bytes a BPTT unroll holds for its backward pass (ARCHITECTURE.md
"Conventions"): :class:`SavedTensorMeter` counts tensors autograd saves (through
``torch.autograd.graph.saved_tensors_hooks``), each storage once, inputs and parameters
excluded, plus the executor's hidden-state checkpoints. :func:`measure_step_bytes` uses it
on two traced steps to size hidden and internal states for
:func:`learners.bptt_plan.plan_for_budget`."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from learners.bptt.step_values import (
    StepFn,
    cuda_devices,
    carries_gradient,
    flatten,
    resolve_parameters,
    storage_key,
    unflatten,
)


def storage_bytes(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().nbytes()


class _Held:
    """A tensor counted by a meter while this object lives (autograd holds it when packed)."""

    __slots__ = ("tensor", "_release", "__weakref__")

    def __init__(self, tensor: torch.Tensor, release):
        self.tensor = tensor
        self._release = release

    def __del__(self):
        self._release()


class SavedTensorMeter:
    """Live and peak bytes held for backward, counted once per storage.

    Use as a context manager around forward and backward. It counts tensors autograd
    saves (pack hook) until autograd frees them, plus tensors registered with
    :meth:`hold` (the executor's checkpoints). Storages of ``exclude`` (inputs,
    parameters) are never counted.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._excluded = {storage_key(t) for t in exclude if isinstance(t, torch.Tensor)}
        self._references: dict[tuple[str, int], int] = {}
        self.live_bytes = 0
        self.peak_bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def exclude(self, tensors: Iterable[torch.Tensor]) -> None:
        self._excluded.update(storage_key(t) for t in tensors if isinstance(t, torch.Tensor))

    def hold(self, tensor: torch.Tensor) -> _Held | torch.Tensor:
        """Count ``tensor`` until the returned handle is dropped."""
        key = storage_key(tensor)
        if key in self._excluded or tensor.numel() == 0:
            return tensor
        count = self._references.get(key, 0)
        self._references[key] = count + 1
        if count == 0:
            self.live_bytes += storage_bytes(tensor)
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        size = storage_bytes(tensor)
        meter = weakref.ref(self)

        def release():
            owner = meter()
            if owner is None:
                return
            remaining = owner._references[key] - 1
            if remaining:
                owner._references[key] = remaining
            else:
                del owner._references[key]
                owner.live_bytes -= size

        return _Held(tensor, release)

    def reset_peak(self) -> None:
        self.peak_bytes = self.live_bytes

    def _pack(self, tensor: torch.Tensor):
        return self.hold(tensor)

    @staticmethod
    def _unpack(packed):
        return packed.tensor if isinstance(packed, _Held) else packed

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


@dataclass(frozen=True)
class StepBytes:
    """Sizes for :func:`learners.bptt_plan.plan_for_budget`.

    Attributes:
        hidden_bytes: bytes of the state's float tensors (one hidden state, h in the paper).
        internal_bytes: bytes one step saves for its backward (its internal state; this
            includes its input state, and its output state when the step saves it), storages
            counted once, inputs and parameters excluded.
        stored_internal_bytes: a stored internal state, the step's saved tensors plus its
            output state (storages shared between them counted once).
        chained_internal_bytes: the same for a step whose input state is held already
            (the output of the step before it): what plain BPTT holds per step.
        fixed_bytes: held whatever the plan: state updated in place (SAM's memory tables)
            and its journal over the whole unroll. :func:`learners.bptt.unroll.plan_within_budget`
            plans the rest.
    """

    hidden_bytes: int
    internal_bytes: int
    stored_internal_bytes: int | None = None
    chained_internal_bytes: int | None = None
    fixed_bytes: int = 0

    @property
    def plain_step_bytes(self) -> int:
        """What plain BPTT holds per step: the chained internal state where measured."""
        return self.chained_internal_bytes or self.stored_internal_bytes or self.internal_bytes

    @property
    def alpha(self) -> float:
        """Size of a stored internal state (saved tensors + output state) in hidden states."""
        return (self.internal_bytes + self.hidden_bytes) / self.hidden_bytes


def measure_step_bytes(
    step_fn: StepFn,
    state: Mapping,
    inputs_t: Mapping,
    parameters: Iterable[torch.Tensor] | None = None,
    in_place: Iterable[torch.Tensor] = (),
) -> StepBytes:
    """Trace two chained steps with grad and measure hidden and internal state bytes.

    ``inputs_t`` is one time step of the inputs (``[B, ...]`` leaves), fed to both steps.
    The global RNG is restored afterwards, so measuring does not change a seeded run.
    ``in_place``: state tensors updated in place (a journal's ``tables``); they are not
    part of a hidden state, and the caller must rewind them after the two steps.
    """
    params = resolve_parameters(step_fn, parameters)
    state_flat = flatten(state)
    in_place_keys = {storage_key(t) for t in in_place}

    def differentiable(value):
        return carries_gradient(value, in_place_keys)

    hidden = {}
    for value in state_flat.values():
        if differentiable(value):
            hidden[storage_key(value)] = storage_bytes(value)
    x_flat = flatten(inputs_t)
    meter = SavedTensorMeter(exclude=list(x_flat.values()) + params + list(in_place))
    with torch.random.fork_rng(devices=cuda_devices(state_flat, x_flat)), torch.enable_grad(), meter:
        leaves = {p: (v.detach().requires_grad_() if differentiable(v) else v) for p, v in state_flat.items()}
        new_state, out = step_fn(unflatten(leaves), unflatten(x_flat))
        internal = meter.live_bytes
        new_flat = flatten(new_state)
        held = [meter.hold(v) for v in new_flat.values() if differentiable(v)]
        stored = meter.live_bytes
        chained_leaves = {p: (v.detach().requires_grad_() if differentiable(v) else v) for p, v in new_flat.items()}
        second_state, second_out = step_fn(unflatten(chained_leaves), unflatten(x_flat))
        held += [meter.hold(v) for v in flatten(second_state).values() if differentiable(v)]
        chained = meter.live_bytes - stored
        del new_state, out, new_flat, chained_leaves, second_state, second_out, held
    return StepBytes(
        hidden_bytes=sum(hidden.values()), internal_bytes=internal,
        stored_internal_bytes=stored, chained_internal_bytes=chained,
    )
