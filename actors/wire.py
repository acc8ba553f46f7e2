"""The `Rollout` and its msgpack wire format.

A rollout is T agent steps of B environments from one actor. Arrays travel as raw bytes
with their dtype and shape; nothing is pickled. :func:`decode` validates the schema
name and version, every field's dtype and shape, and the T/B consistency between
fields, and raises :class:`RolloutDecodeError` naming the problem otherwise. Whether a
well-formed rollout fits the learner (T, widths, action range, state layout, finite
values) is :mod:`learners.rollout_check`'s question.

Time layout (T = unroll length, B = envs in the actor):

* ``observations`` ``[T+1, B, *obs]``: x_0 … x_T (x_T bootstraps V-trace).
* ``firsts`` ``[T+1, B]`` bool: x_t is the first observation of an episode. An episode
  ended on step t exactly when ``firsts[t+1]``.
* ``actions`` ``[T, B]`` int64, ``rewards`` ``[T, B]`` float32 (raw game score).
* ``behaviour_logits`` ``[T+1, B, A]`` and ``decisions[name]`` ``[T+1, B, ...]``: the
  actor's agent outputs at x_0 … x_T. Step T's output is also step 0 of the next rollout.
* ``initial_prev_action`` / ``initial_prev_reward`` ``[B]``: the agent's inputs at x_0.
* ``initial_state``: the packed core state before step 0 (see ``Agent.pack_state``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgpack
import numpy as np

SCHEMA = "engram.rollout"
VERSION = 1
_ALLOWED_DTYPES = {"uint8", "bool", "int32", "int64", "float16", "float32", "float64"}


class RolloutDecodeError(ValueError):
    """A message is not a valid rollout; the text says which field is wrong and how."""


@dataclass
class Rollout:
    actor_id: int
    policy_version: int
    observations: np.ndarray
    firsts: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    behaviour_logits: np.ndarray
    initial_prev_action: np.ndarray
    initial_prev_reward: np.ndarray
    initial_state: dict[str, np.ndarray] = field(default_factory=dict)
    decisions: dict[str, np.ndarray] = field(default_factory=dict)
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    telemetry: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def unroll_length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_envs(self) -> int:
        return int(self.actions.shape[1])


# name -> (allowed dtypes, shape prefix as a function of (T, B)); None = any dtype
_ARRAY_FIELDS = {
    "observations": ({"uint8", "float32"}, lambda T, B: (T + 1, B)),
    "firsts": ({"bool"}, lambda T, B: (T + 1, B)),
    "actions": ({"int64"}, lambda T, B: (T, B)),
    "rewards": ({"float32"}, lambda T, B: (T, B)),
    "behaviour_logits": ({"float32"}, lambda T, B: (T + 1, B)),
    "initial_prev_action": ({"int64"}, lambda T, B: (B,)),
    "initial_prev_reward": ({"float32"}, lambda T, B: (B,)),
    "episode_returns": ({"float64"}, None),
    "episode_lengths": ({"int64"}, None),
}
_DICT_FIELDS = ("initial_state", "decisions", "telemetry")  # maps of arrays; decode checks decisions' [T+1, B]
_INT_FIELDS = ("actor_id", "policy_version")
SCHEMA_FIELDS = (*_INT_FIELDS, *_ARRAY_FIELDS, *_DICT_FIELDS)


def _pack_array(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": array.tobytes()}


def _unpack_array(name: str, message) -> np.ndarray:
    if not isinstance(message, dict) or set(message) != {"dtype", "shape", "data"}:
        raise RolloutDecodeError(f"field {name!r}: expected an array {{dtype, shape, data}}")
    dtype, shape, data = message["dtype"], message["shape"], message["data"]
    if dtype not in _ALLOWED_DTYPES:
        raise RolloutDecodeError(f"field {name!r}: dtype {dtype!r} is not allowed")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise RolloutDecodeError(f"field {name!r}: bad shape {shape!r}")
    if not isinstance(data, bytes):
        raise RolloutDecodeError(f"field {name!r}: data must be bytes")
    expected = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: no int64 overflow
    if len(data) != expected:
        raise RolloutDecodeError(
            f"field {name!r}: {len(data)} bytes for shape {shape} of {dtype} (expected {expected}); truncated?"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def encode(rollout: Rollout) -> bytes:
    message: dict = {"schema": SCHEMA, "version": VERSION}
    for name in _INT_FIELDS:
        message[name] = int(getattr(rollout, name))
    for name in _ARRAY_FIELDS:
        message[name] = _pack_array(getattr(rollout, name))
    for name in _DICT_FIELDS:
        message[name] = {key: _pack_array(value) for key, value in getattr(rollout, name).items()}
    return msgpack.packb(message, use_bin_type=True)


def decode(payload: bytes) -> Rollout:
    """Parse and validate one message; raise :class:`RolloutDecodeError` if it is bad."""
    try:
        message = msgpack.unpackb(payload, raw=False)
    except Exception as error:  # msgpack raises several unrelated types
        raise RolloutDecodeError(f"not a msgpack message ({type(error).__name__}: {error})") from None
    if not isinstance(message, dict) or message.get("schema") != SCHEMA:
        raise RolloutDecodeError(f"not an {SCHEMA} message")
    if message.get("version") != VERSION:
        raise RolloutDecodeError(f"rollout version {message.get('version')!r}; this learner reads version {VERSION}")
    expected_keys = {"schema", "version", *SCHEMA_FIELDS}
    missing, extra = expected_keys - set(message), set(message) - expected_keys
    if missing or extra:
        raise RolloutDecodeError(f"rollout fields: missing {sorted(missing)}, unexpected {sorted(extra)}")
    values: dict = {}
    for name in _INT_FIELDS:
        if not isinstance(message[name], int):
            raise RolloutDecodeError(f"field {name!r}: expected an int")
        values[name] = message[name]
    for name in _ARRAY_FIELDS:
        values[name] = _unpack_array(name, message[name])
    for name in _DICT_FIELDS:
        if not isinstance(message[name], dict):
            raise RolloutDecodeError(f"field {name!r}: expected a map of arrays")
        values[name] = {key: _unpack_array(f"{name}.{key}", value) for key, value in message[name].items()}

    if values["actions"].ndim != 2:
        raise RolloutDecodeError(f"field 'actions': expected [T, B], got shape {values['actions'].shape}")
    T, B = values["actions"].shape
    for name, (dtypes, prefix) in _ARRAY_FIELDS.items():
        array = values[name]
        if array.dtype.name not in dtypes:
            raise RolloutDecodeError(f"field {name!r}: dtype {array.dtype.name}, expected {sorted(dtypes)}")
        if prefix is not None and array.shape[: len(prefix(T, B))] != prefix(T, B):
            raise RolloutDecodeError(f"field {name!r}: shape {array.shape} does not start with {prefix(T, B)}")
    for key, array in values["decisions"].items():
        if array.shape[:2] != (T + 1, B):
            raise RolloutDecodeError(f"field 'decisions.{key}': shape {array.shape} does not start with {(T + 1, B)}")
    if values["episode_returns"].shape != values["episode_lengths"].shape:
        raise RolloutDecodeError("fields 'episode_returns' and 'episode_lengths' differ in length")
    return Rollout(**values)

