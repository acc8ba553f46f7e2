"""The rollout wire: exact round trips, and clear rejection of bad messages."""

import msgpack
import numpy as np
import pytest

from actors import wire


def make_rollout(T=5, B=3, A=6, obs_shape=(4, 8, 8)):
    rng = np.random.default_rng(0)
    return wire.Rollout(
        actor_id=2,
        policy_version=17,
        observations=rng.integers(0, 255, (T + 1, B, *obs_shape), dtype=np.uint8),
        firsts=rng.random((T + 1, B)) < 0.2,
        actions=rng.integers(0, A, (T, B)).astype(np.int64),
        rewards=rng.standard_normal((T, B)).astype(np.float32),
        behaviour_logits=rng.standard_normal((T + 1, B, A)).astype(np.float32),
        initial_prev_action=rng.integers(0, A, B).astype(np.int64),
        initial_prev_reward=rng.standard_normal(B).astype(np.float32),
        initial_state={"hidden": rng.standard_normal((B, 7)).astype(np.float32)},
        decisions={"replan": (rng.random((T + 1, B)) < 0.5).astype(np.float32)},
        episode_returns=np.array([1.5, -2.0]),
        episode_lengths=np.array([10, 20], np.int64),
    )


def _tamper(payload: bytes, edit) -> bytes:
    message = msgpack.unpackb(payload, raw=False)
    edit(message)
    return msgpack.packb(message, use_bin_type=True)


def test_the_schema_covers_every_rollout_field():
    import dataclasses

    assert {f.name for f in dataclasses.fields(wire.Rollout)} == set(wire.SCHEMA_FIELDS)


def test_round_trip_is_exact():
    rollout = make_rollout()
    decoded = wire.decode(wire.encode(rollout))
    for name in ("observations", "firsts", "actions", "rewards", "behaviour_logits", "episode_returns"):
        original, copy = getattr(rollout, name), getattr(decoded, name)
        assert copy.dtype == original.dtype and np.array_equal(copy, original), name
    assert np.array_equal(decoded.initial_state["hidden"], rollout.initial_state["hidden"])
    assert np.array_equal(decoded.decisions["replan"], rollout.decisions["replan"])
    assert (decoded.actor_id, decoded.policy_version) == (2, 17)


def test_truncated_message_is_rejected():
    payload = wire.encode(make_rollout())
    with pytest.raises(wire.RolloutDecodeError):
        wire.decode(payload[: len(payload) // 2])


def test_truncated_array_names_the_field():
    payload = _tamper(wire.encode(make_rollout()), lambda m: m["rewards"].update(data=m["rewards"]["data"][:-4]))
    with pytest.raises(wire.RolloutDecodeError, match="rewards"):
        wire.decode(payload)


def test_wrong_dtype_is_rejected():
    def to_float64(message):
        data = np.frombuffer(message["actions"]["data"], np.int64).astype(np.float64)
        message["actions"].update(dtype="float64", data=data.tobytes())

    with pytest.raises(wire.RolloutDecodeError, match="actions"):
        wire.decode(_tamper(wire.encode(make_rollout()), to_float64))


def test_wrong_version_is_rejected():
    with pytest.raises(wire.RolloutDecodeError, match="version"):
        wire.decode(_tamper(wire.encode(make_rollout()), lambda m: m.update(version=wire.VERSION + 1)))


def test_inconsistent_time_length_is_rejected():
    def drop_a_step(message):
        obs = message["observations"]
        step_bytes = len(obs["data"]) // obs["shape"][0]
        obs.update(shape=[obs["shape"][0] - 1, *obs["shape"][1:]], data=obs["data"][:-step_bytes])

    with pytest.raises(wire.RolloutDecodeError, match="observations"):
        wire.decode(_tamper(wire.encode(make_rollout()), drop_a_step))


def test_missing_field_and_garbage_are_rejected():
    with pytest.raises(wire.RolloutDecodeError, match="missing"):
        wire.decode(_tamper(wire.encode(make_rollout()), lambda m: m.pop("firsts")))
    with pytest.raises(wire.RolloutDecodeError):
        wire.decode(b"\x93not a rollout")
    with pytest.raises(wire.RolloutDecodeError, match="not an"):
        wire.decode(msgpack.packb({"schema": "something.else"}))
