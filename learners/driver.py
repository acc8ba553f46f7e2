"""The training driver: K Ray rollout actors feeding one learner, asynchronously.

The loop (IMPALA, Espeholt et al. 2018, §3):

* every actor always has one ``unroll`` call in flight; ``ray.wait`` returns whichever
  finishes first, so slow actors never stall fast ones;
* a finished rollout is decoded and validated; a malformed one is counted and dropped;
* when ``rollouts_per_update`` rollouts are buffered, the learner takes one step and the
  new weights are published once with ``ray.put`` under a new version; an actor picks
  them up at the start of its next unroll, and the learner measures the policy lag;
* an actor that dies is logged with its id and replaced, and the run goes on; Ray places
  the replacement wherever the cluster has room (a node that joined later included). When
  an actor dies the driver also looks for Ray nodes that left the cluster, and counts them.

The driver holds no configuration logic: ``engram/`` builds the pieces and the
callbacks (telemetry, checkpoints) and passes them in.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import ray

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from learners.rollout_check import RolloutSpec

log = logging.getLogger("engram.driver")


class LearnerHandle(Protocol):
    """The learner as the driver sees it: a :class:`~learners.learner.Learner` in this
    process, or a :class:`~learners.remote_learner.RemoteLearner` proxy."""

    updates: int

    def update(self, rollouts: list[wire.Rollout], learner_version: int | None = None) -> dict[str, float]: ...

    def get_weights(self) -> dict: ...


@dataclass
class DriverSettings:
    num_actors: int
    rollouts_per_update: int
    total_steps: int
    unroll_length: int
    actor_num_cpus: float = 1.0
    actor_torch_threads: int = 1
    max_actor_restarts: int = 100
    seed: int = 0


@dataclass
class Progress:
    """Counters saved in checkpoints and restored by ``--resume``."""

    env_steps: int = 0
    episodes: int = 0
    actor_restarts: int = 0
    nodes_lost: int = 0
    rejected_rollouts: int = 0
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=100))
    recent_lengths: deque = field(default_factory=lambda: deque(maxlen=100))

    def state_dict(self) -> dict:
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "actor_restarts": self.actor_restarts,
            "nodes_lost": self.nodes_lost,
            "rejected_rollouts": self.rejected_rollouts,
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
        }

    def load_state_dict(self, state: dict) -> None:
        self.env_steps = state["env_steps"]
        self.episodes = state["episodes"]
        self.actor_restarts = state["actor_restarts"]
        self.nodes_lost = state.get("nodes_lost", 0)  # absent from checkpoints written before it existed
        self.rejected_rollouts = state["rejected_rollouts"]
        self.recent_returns.extend(state["recent_returns"])
        self.recent_lengths.extend(state["recent_lengths"])


class Driver:
    """Runs actors and learner until ``total_steps`` agent steps have been learned from.

    Args:
        learner: the :class:`LearnerHandle` (in this process or a Ray actor).
        env_factory / agent_factory: picklable builders for the actors.
        on_update: ``on_update(progress, metrics, rollouts)`` after each learner step.
        should_stop: polled between updates (e.g. a signal handler's flag).
        worker_class: the actor's class (a :class:`RolloutWorker` or a subclass).
        rollout_spec: what the learner accepts; a rollout that does not fit is dropped
            and counted in ``rejected_rollouts`` before it can join a batch.
    """

    def __init__(
        self,
        settings: DriverSettings,
        learner: LearnerHandle,
        env_factory: Callable[[], Any],
        agent_factory: Callable[[], Any],
        progress: Progress | None = None,
        on_update: Callable[[Progress, dict, list], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        worker_class: type = RolloutWorker,
        rollout_spec: RolloutSpec | None = None,
    ):
        self.settings = settings
        self.learner = learner
        self.env_factory = env_factory
        self.agent_factory = agent_factory
        self.progress = progress or Progress()
        self.on_update = on_update or (lambda progress, metrics, rollouts: None)
        self.should_stop = should_stop
        self.rollout_spec = rollout_spec
        self._remote_worker = ray.remote(num_cpus=settings.actor_num_cpus, max_restarts=0)(worker_class)
        self._actors: dict[int, Any] = {}
        self._generation: dict[int, int] = {}
        self.version = learner.updates
        self._weights = self._publish()
        self._alive_nodes = self._nodes_alive()

    def _publish(self) -> PublishedWeights:
        return PublishedWeights(self.version, [ray.put(self.learner.get_weights())])

    def _start_actor(self, actor_id: int):
        generation = self._generation.get(actor_id, 0)
        self._generation[actor_id] = generation + 1
        # ALE takes seeds as C ints, one per env counting up from this one.
        seed = int(np.random.SeedSequence([self.settings.seed, actor_id, generation]).generate_state(1)[0]) % 2**30
        self._actors[actor_id] = self._remote_worker.remote(
            actor_id,
            self.env_factory,
            self.agent_factory,
            self.settings.unroll_length,
            seed,
            self.settings.actor_torch_threads,
        )

    def _request(self, actor_id: int, pending: dict):
        pending[self._actors[actor_id].unroll.remote(self._weights)] = actor_id

    @staticmethod
    def _nodes_alive() -> set[str]:
        return {node["NodeID"] for node in ray.nodes() if node["Alive"]}

    def _count_lost_nodes(self) -> None:
        alive = self._nodes_alive()
        lost = self._alive_nodes - alive
        if lost:
            self.progress.nodes_lost += len(lost)
            log.warning("%d Ray node(s) left the cluster: %s", len(lost), ", ".join(sorted(lost)))
        self._alive_nodes = alive

    def _replace_actor(self, actor_id: int, error: BaseException) -> None:
        self.progress.actor_restarts += 1
        self._count_lost_nodes()
        log.warning("actor %d failed (%s: %s); starting a replacement", actor_id, type(error).__name__, error)
        if self.progress.actor_restarts > self.settings.max_actor_restarts:
            raise RuntimeError(
                f"{self.progress.actor_restarts} actor failures: giving up (last: actor {actor_id}: {error})"
            ) from error
        try:
            ray.kill(self._actors[actor_id])
        except Exception:  # already gone
            pass
        self._start_actor(actor_id)

    def actor_handle(self, actor_id: int):
        """The live Ray handle of one actor (tests kill actors through it)."""
        return self._actors[actor_id]

    def run(self) -> Progress:
        s = self.settings
        pending: dict = {}
        for actor_id in range(s.num_actors):
            self._start_actor(actor_id)
            self._request(actor_id, pending)
        buffer: list[wire.Rollout] = []
        try:
            while self.progress.env_steps < s.total_steps and not self.should_stop():
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    actor_id = pending.pop(ref)
                    try:
                        payload = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as error:
                        self._replace_actor(actor_id, error)
                        self._request(actor_id, pending)
                        continue
                    self._request(actor_id, pending)
                    try:
                        rollout = wire.decode(payload)
                        if self.rollout_spec is not None:
                            self.rollout_spec.check(rollout, newest_version=self.version)
                    except wire.RolloutDecodeError as error:  # RolloutRejected included
                        self.progress.rejected_rollouts += 1
                        log.warning("rejected a rollout from actor %d: %s", actor_id, error)
                        continue
                    buffer.append(rollout)
                while len(buffer) >= s.rollouts_per_update:
                    batch, buffer = buffer[: s.rollouts_per_update], buffer[s.rollouts_per_update :]
                    self._learn(batch)
        finally:
            for actor in self._actors.values():
                ray.kill(actor)
        return self.progress

    def _learn(self, rollouts: list[wire.Rollout]) -> None:
        started = time.perf_counter()
        metrics = self.learner.update(rollouts, learner_version=self.version)
        metrics["learner/update_seconds"] = time.perf_counter() - started
        self.version += 1
        self._weights = self._publish()
        for rollout in rollouts:
            self.progress.env_steps += rollout.unroll_length * rollout.num_envs
            self.progress.episodes += len(rollout.episode_returns)
            self.progress.recent_returns.extend(rollout.episode_returns.tolist())
            self.progress.recent_lengths.extend(rollout.episode_lengths.tolist())
        self.on_update(self.progress, metrics, rollouts)
