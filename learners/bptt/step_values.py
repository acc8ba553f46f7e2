"""The values a BPTT step takes and gives: nested dicts of tensors, flattened to
``{path: leaf}`` and back, which of their leaves carry a gradient, and the parameters a
step uses besides them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

StepFn = Callable[[dict, dict], tuple[dict, dict]]
Path = tuple[str, ...]


# Nested dicts <-> flat {path: leaf}. A bare tensor is a tree of one leaf at path ().


def flatten(tree: Any, prefix: Path = (), *, what: str = "a step's state or output") -> dict[Path, Any]:
    if isinstance(tree, torch.Tensor) and not prefix:
        return {(): tree}
    if not isinstance(tree, Mapping):
        raise TypeError(
            f"{what} must be a tensor or a (nested) dict of tensors, got {type(tree).__name__}; "
            "wrap tuples and lists in a dict, e.g. {'h': h, 'c': c}"
        )
    flat: dict[Path, Any] = {}
    for key, value in tree.items():
        if not isinstance(value, torch.Tensor) and isinstance(value, Mapping):
            flat.update(flatten(value, prefix + (key,), what=what))
        else:
            flat[prefix + (key,)] = value
    return flat


def unflatten(flat: Mapping[Path, Any]) -> Any:
    if () in flat:
        return flat[()]
    tree: dict = {}
    for path, value in flat.items():
        if len(path) == 1:
            tree[path[0]] = value
            continue
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def carries_gradient(value: Any, in_place_keys: set) -> bool:
    """A float state leaf that is not one of the tables a journal updates in place."""
    return is_float(value) and not (in_place_keys and storage_key(value) in in_place_keys)


def is_float(value: Any) -> bool:
    if not isinstance(value, torch.Tensor):
        return False
    dtype = value.dtype
    return dtype.is_floating_point or dtype.is_complex


def storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    """One storage, whatever view of it: (device, address)."""
    return (str(tensor.device), tensor.untyped_storage().data_ptr())


def resolve_parameters(step_fn, parameters) -> list[torch.Tensor]:
    if parameters is None:
        owner = step_fn if isinstance(step_fn, nn.Module) else getattr(step_fn, "__self__", None)
        if isinstance(owner, nn.Module) and (isinstance(step_fn, nn.Module) or inspect.ismethod(step_fn)):
            parameters = owner.parameters()
        else:
            parameters = ()
    unique, seen = [], set()
    for tensor in parameters:
        if tensor.requires_grad and id(tensor) not in seen:
            seen.add(id(tensor))
            unique.append(tensor)
    return unique


def cuda_devices(*flats: Mapping[Path, Any]) -> list[int]:
    devices = set()
    for flat in flats:
        for value in flat.values():
            if isinstance(value, torch.Tensor) and value.is_cuda:
                devices.add(value.device.index)
    return sorted(devices)
