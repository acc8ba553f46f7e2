"""Where rollouts meet the learner, whether it lives in the driver's process or in a Ray actor.

The data path (issue 22 item 1): an actor's rollout stays in the object store of the node
that produced it until the learner fetches it; the learner's new weights go into the object
store once per version, from the learner's own process, and every actor fetches them from
there. The driver hands over object references and reads back counters and metrics; no
rollout or weight tensor passes through it on the way to training, wherever the learner runs.

:class:`LearnerEndpoint` is the learner's side of that path: it fetches the rollouts it is
given, decodes and checks each, keeps the good ones until a batch is full, learns from the
batch and publishes the weights. The driver holds one directly (a CPU learner in its own
process) or through :class:`~learners.remote_learner.RemoteLearner` (a Ray actor, a GPU
learner's usual home); both answer the same calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from actors import wire
from actors.rollout import PublishedWeights
from learners.learner import Learner
from learners.rollout_check import RolloutSpec


@dataclass
class LearnedBatch:
    """One learner update: its metrics, what it learned from, and the weights it published."""

    metrics: dict[str, float]
    env_steps: int
    episode_returns: list[float]
    episode_lengths: list[int]
    rollout_refs: list  # the learned rollouts' object references, for the driver's telemetry
    weights: PublishedWeights | None  # None from a data-parallel replica that does not publish


@dataclass
class EndpointReply:
    """What the driver learns from handing over rollouts.

    ``rejected`` holds (position in the call, reason) for each rollout dropped; ``buffered`` counts the good
    rollouts waiting for the next batch; ``learned`` is set when a batch was full and trained on.
    """

    rejected: list[tuple[int, str]] = field(default_factory=list)
    buffered: int = 0
    learned: LearnedBatch | None = None
    updates: int = 0
    skipped_updates: int = 0


class LearnerEndpoint:
    """Owns a :class:`Learner`; trains it on rollouts fetched from the object store.

    Args:
        learner: the learner to train.
        rollout_spec: what the learner accepts; a rollout that does not fit is dropped with
            the reason, before it can join a batch.
        rollouts_per_update: rollouts per batch.
    """

    def __init__(self, learner: Learner, rollout_spec: RolloutSpec | None, rollouts_per_update: int):
        self.learner = learner
        self.rollout_spec = rollout_spec
        self.rollouts_per_update = rollouts_per_update
        self._buffer: list[tuple[object, wire.Rollout]] = []

    @property
    def updates(self) -> int:
        return self.learner.updates

    def publish(self, version: int) -> PublishedWeights:
        """Put the current weights in the object store once, from this process."""
        import ray

        return PublishedWeights(version, [ray.put(self.learner.get_weights())])

    def receive(self, rollout_refs: list, version: int) -> EndpointReply:
        """Fetch, decode and check ``rollout_refs``; learn once a batch is full.

        ``version`` is the version of the weights the actors now act with; after a batch
        the new weights are published as ``version + 1``.
        """
        reply = self.accept(rollout_refs, version)
        if self.full:
            reply.learned = self.learn(version)
            reply.buffered = len(self._buffer)
            reply.updates, reply.skipped_updates = self.counters()
        return reply

    def accept(self, rollout_refs: list, version: int) -> EndpointReply:
        """Fetch, decode and check ``rollout_refs``; keep the good ones for the next batch."""
        import ray

        reply = EndpointReply()
        payloads = ray.get(list(rollout_refs))
        for position, (ref, payload) in enumerate(zip(rollout_refs, payloads)):
            try:
                rollout = wire.decode(payload)
                if self.rollout_spec is not None:
                    self.rollout_spec.check(rollout, newest_version=version)
            except wire.RolloutDecodeError as error:  # RolloutRejected included
                reply.rejected.append((position, str(error)))
                continue
            self._buffer.append((ref, rollout))
        reply.buffered = len(self._buffer)
        reply.updates, reply.skipped_updates = self.counters()
        return reply

    @property
    def full(self) -> bool:
        return len(self._buffer) >= self.rollouts_per_update

    def learn(self, version: int, *, publish: bool = True) -> LearnedBatch:
        """One update on the first full batch held; with ``publish``, put the new weights in
        the object store (a data-parallel replica other than the first does not)."""
        batch = self._buffer[: self.rollouts_per_update]
        self._buffer = self._buffer[self.rollouts_per_update :]
        rollouts = [rollout for _, rollout in batch]
        metrics = self.learner.update(rollouts, learner_version=version)
        return LearnedBatch(
            metrics=metrics,
            env_steps=sum(r.unroll_length * r.num_envs for r in rollouts),
            episode_returns=np.concatenate([r.episode_returns for r in rollouts]).tolist(),
            episode_lengths=np.concatenate([r.episode_lengths for r in rollouts]).tolist(),
            rollout_refs=[ref for ref, _ in batch],
            weights=self.publish(version + 1) if publish else None,
        )

    def state_dict(self) -> dict:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)

    def exploration_telemetry(self, samples: bool) -> dict:
        return self.learner.exploration_telemetry(samples)

    def counters(self) -> tuple[int, int]:
        return self.learner.updates, self.learner.skipped_updates

    def close(self) -> None:
        self.learner.close()

