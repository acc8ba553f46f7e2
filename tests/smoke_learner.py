"""A learner on ``configs/smoke.yaml`` and the batches it trains on, for tests of the update."""

from __future__ import annotations

import torch

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from engram import build
from engram.config import load_config


def smoke_learner(overrides: list[str]):
    """``(config, spec, learner, next_batch)``: ``next_batch()`` returns one batch's rollouts,
    acted by the learner's current weights in a worker seeded 3."""
    config = load_config("configs/smoke.yaml", overrides)
    spec = build.probe_env(config)
    torch.manual_seed(0)
    learner = build.learner(config, build.agent_factory(config, spec)())
    worker = RolloutWorker(0, build.env_factory(config, seed=3), build.agent_factory(config, spec),
                           config.learner.unroll_length, seed=3)
    per_batch = config.learner.batch_size // config.resources.envs_per_actor

    def next_batch():
        weights = PublishedWeights(0, [learner.agent.state_dict()])
        return [wire.decode(worker.unroll(weights)) for _ in range(per_batch)]

    return config, spec, learner, next_batch
