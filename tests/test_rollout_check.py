"""The learner's rollout spec: real rollouts pass and train; each impossible one is refused by name."""

import copy
import functools

import numpy as np
import pytest

from actors import wire
from actors.rollout import RolloutWorker
from agents.registry import build_agent
from engram.config import LearnerConfig
from envs.registry import make_vector_env
from learners.learner import Learner, LearnerSettings
from learners.rollout_check import RolloutRejected, RolloutSpec
from agent_settings import agent_options

T, B, A = 6, 3, 2
CORE_OPTIONS = {
    "lstm": {"hidden_size": 16},
    "sam": {"hidden_size": 16, "memory_slots": 32, "word_size": 8, "num_heads": 2, "top_k": 4},
    "straw": {"plan_length": 4, "patch_size": 2, "hidden_size": 16},
}


def _setup(core):
    env_factory = functools.partial(make_vector_env, "memory_cue", B, seed=0, options={"delay": 3})
    make_agent = functools.partial(
        build_agent, (4,), A, **agent_options(torso_size=16, core=core, core_options=CORE_OPTIONS[core])
    )
    worker = RolloutWorker(0, env_factory, make_agent, T, seed=1)
    spec = RolloutSpec.from_agent(make_agent(), (4,), "float32", T)
    return worker, make_agent, spec


@pytest.mark.parametrize("core", sorted(CORE_OPTIONS))
def test_real_rollouts_pass_and_train(core):
    worker, make_agent, spec = _setup(core)
    rollouts = [wire.decode(worker.unroll()) for _ in range(3)]  # SAM's touched rows grow
    for rollout in rollouts:
        spec.check(rollout, newest_version=0)
    learner = Learner(make_agent(), LearnerSettings.from_config(LearnerConfig()))
    learner.update(rollouts[1:], learner_version=0)
    assert learner.updates == 1


def _edits():
    def out_of_range_action(r):
        r.actions = r.actions.copy()
        r.actions[2, 1] = A

    def negative_prev_action(r):
        r.initial_prev_action = np.full_like(r.initial_prev_action, -1)

    def longer_unroll(r):
        for name in ("observations", "firsts", "behaviour_logits"):
            setattr(r, name, np.concatenate([getattr(r, name), getattr(r, name)[-1:]]))
        r.actions, r.rewards = np.concatenate([r.actions, r.actions[-1:]]), np.concatenate([r.rewards, r.rewards[-1:]])
        r.decisions = {k: np.concatenate([v, v[-1:]]) for k, v in r.decisions.items()}

    def wider_observation(r):
        r.observations = np.concatenate([r.observations, r.observations[..., :1]], axis=-1)

    def uint8_observation(r):
        r.observations = r.observations.astype(np.uint8)

    def more_logits(r):
        r.behaviour_logits = np.concatenate([r.behaviour_logits, r.behaviour_logits[..., :1]], axis=-1)

    def state_key_renamed(r):
        key = sorted(r.initial_state)[0]
        r.initial_state = {**{k: v for k, v in r.initial_state.items() if k != key}, key + "_x": r.initial_state[key]}

    def state_batch(r):
        r.initial_state = {k: np.concatenate([v, v[:1]]) for k, v in r.initial_state.items()}

    def state_dtype(r):
        r.initial_state = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in r.initial_state.items()}

    def nan_reward(r):
        r.rewards = r.rewards.copy()
        r.rewards[0, 0] = np.nan

    def nan_state(r):
        key = next(k for k, v in r.initial_state.items() if v.dtype.kind == "f")
        r.initial_state = {**r.initial_state, key: np.full_like(r.initial_state[key], np.inf)}

    def future_version(r):
        r.policy_version = 5

    return {f.__name__: f for f in (
        out_of_range_action, negative_prev_action, longer_unroll, wider_observation, uint8_observation,
        more_logits, state_key_renamed, state_batch, state_dtype, nan_reward, nan_state, future_version,
    )}


EXPECTED = {
    "out_of_range_action": "actions", "negative_prev_action": "initial_prev_action", "longer_unroll": "unroll length",
    "wider_observation": "observations", "uint8_observation": "observations", "more_logits": "behaviour_logits",
    "state_key_renamed": "initial_state", "state_batch": "batch", "state_dtype": "dtype", "nan_reward": "rewards",
    "nan_state": "NaN or infinite", "future_version": "policy version",
}


@pytest.mark.parametrize("core", ["lstm", "sam"])
@pytest.mark.parametrize("edit", sorted(_edits()))
def test_an_impossible_rollout_is_refused_by_name(core, edit):
    worker, _, spec = _setup(core)
    rollout = wire.decode(wire.encode(wire.decode(worker.unroll())))
    bad = copy.deepcopy(rollout)
    _edits()[edit](bad)
    bad = wire.decode(wire.encode(bad))  # still a well-formed message
    with pytest.raises(RolloutRejected, match=EXPECTED[edit]):
        spec.check(bad, newest_version=1)
    spec.check(rollout, newest_version=1)


def test_shapes_whose_size_overflows_int64_are_a_decode_error():
    worker, _, _ = _setup("lstm")
    rollout = wire.decode(worker.unroll())
    rollout.episode_returns = np.zeros((0,), np.float64)
    import msgpack

    message = msgpack.unpackb(wire.encode(rollout), raw=False)
    message["episode_returns"]["shape"] = [2**32, 2**32]  # empty data; the product overflows int64
    with pytest.raises(wire.RolloutDecodeError, match="episode_returns"):
        wire.decode(msgpack.packb(message, use_bin_type=True))
