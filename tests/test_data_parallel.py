"""Data-parallel learners (issue 22 item 2): two replicas, each on half of every batch, end
with the weights one learner reaches on the whole batch, update after update.

The replicas are two processes joined by a gloo process group, as two Ray learner actors
would be; the reference is a plain :class:`Learner` in this process on the same rollouts.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.multiprocessing as mp

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from engram import build
from engram.config import load_config

UPDATES = 3
ROLLOUTS = 4  # per batch; each replica takes 2 whole rollouts

SETUPS = {
    "lstm": [],
    "sam": ["agent.core=sam", "agent.memory.hidden_size=32", "agent.memory.memory_slots=64",
            "agent.memory.word_size=8", "agent.memory.num_heads=2", "agent.memory.top_k=4"],
    "straw": ["agent.core=straw", "agent.straw.hidden_size=32", "agent.straw.plan_length=8",
              "agent.straw.patch_size=4"],
    # a 48-step unroll under a budget that makes it recompute (ratio 1.9 whole, 1.8 per half batch)
    "lstm_checkpointed": ["learner.unroll_length=48", "learner.bptt.mode=msm", "learner.bptt.memory_budget=64KiB"],
    "lstm_batch_advantages": ["learner.advantage_normalization=batch"],
}


def _config(name: str):
    return load_config("configs/smoke.yaml", [
        "resources.envs_per_actor=2", f"learner.batch_size={2 * ROLLOUTS}", "learner.unroll_length=12",
        "agent.torso_size=32", "agent.lstm.hidden_size=32", *SETUPS[name],
    ])


def _batches(config) -> list[list[wire.Rollout]]:
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    torch.manual_seed(0)
    worker = RolloutWorker(0, build.env_factory(config, seed=3), make_agent, config.learner.unroll_length, seed=3)
    weights = PublishedWeights(0, [make_agent().state_dict()])
    return [[wire.decode(worker.unroll(weights)) for _ in range(ROLLOUTS)] for _ in range(UPDATES)]


def _learner(config, replicas=None):
    spec = build.probe_env(config)
    torch.manual_seed(1)  # the same initial weights in every process
    agent = build.agent_factory(config, spec)()
    learner = build.learner(config, agent)
    if replicas is not None:
        from learners.learner import Learner

        learner = Learner(agent, build.learner_settings(config), unroll=learner.unroll, replicas=replicas)
    return learner


MEETING_TIMEOUT = timedelta(seconds=120)  # a replica that died fails the other's wait, not hangs it


def _replica(rank: int, world: int, port: int, name: str, batches, results):
    import torch.distributed as dist

    from learners.data_parallel import ReplicaSum, join_replicas

    torch.set_num_threads(1)
    join_replicas("gloo", rank, world, ("127.0.0.1", port), timeout=MEETING_TIMEOUT)
    try:
        learner = _learner(_config(name), ReplicaSum())
        share = ROLLOUTS // world
        for batch in batches:
            learner.update(batch[rank * share : (rank + 1) * share])
        results[rank] = {k: v.clone() for k, v in learner.agent.state_dict().items()}
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", list(SETUPS))
def test_two_replicas_on_half_batches_reach_one_learners_weights(name):
    torch.set_num_threads(1)
    config = _config(name)
    batches = _batches(config)
    reference = _learner(config)
    before = {k: v.clone() for k, v in reference.agent.state_dict().items()}
    for batch in batches:
        reference.update(batch)

    from learners.data_parallel import host_meeting

    context = mp.get_context("spawn")
    meeting = host_meeting("127.0.0.1", MEETING_TIMEOUT)  # this process hosts; both replicas connect
    with context.Manager() as manager:
        results = manager.dict()
        processes = [context.Process(target=_replica, args=(rank, 2, meeting.port, name, batches, results))
                     for rank in range(2)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=300)
        assert all(process.exitcode == 0 for process in processes), [process.exitcode for process in processes]
        replicas = [dict(results[rank]) for rank in range(2)]

    moved = [k for k, v in reference.agent.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved, "the reference learner did not move: nothing would be compared"
    for key, value in reference.agent.state_dict().items():
        for rank, weights in enumerate(replicas):
            torch.testing.assert_close(weights[key], value, rtol=1e-4, atol=1e-5, msg=f"replica {rank}, {key}")
        assert torch.equal(replicas[0][key], replicas[1][key]), key  # bit-identical across replicas


def test_a_data_parallel_learner_refuses_the_exploration_bonus():
    from learners.learner import Learner

    config = _config("lstm")
    agent = build.agent_factory(config, build.probe_env(config))()
    with pytest.raises(ValueError, match="exploration"):
        Learner(agent, build.learner_settings(config), intrinsic_rewards=object(), replicas=object())
