"""The training driver: K Ray rollout actors feeding one learner, asynchronously.

The loop (IMPALA, Espeholt et al. 2018, §3):

* every actor always has one ``unroll`` call in flight; ``ray.wait`` returns whichever
  finishes first, so slow actors never stall fast ones;
* the driver reads only a finished rollout's receipt (its actor and size); the rollout itself
  stays in the object store until the learner fetches it (:mod:`learners.endpoint`), which
  decodes and checks it, drops a malformed one with the reason (counted here), and learns once
  ``rollouts_per_update`` good rollouts are in;
* after each update the learner puts its weights in the object store once under a new version;
  an actor fetches them at the start of its next unroll, and the learner measures the policy lag;
* an actor that dies is logged with its id and replaced, and the run goes on; Ray places
  the replacement wherever the cluster has room (a node that joined later included). When
  an actor dies the driver also looks for Ray nodes that left the cluster, and counts them.

The driver holds no configuration logic and no rollout or weight tensor: ``engram/`` builds the
pieces and the callbacks (telemetry, checkpoints) and passes them in.
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
from learners.endpoint import EndpointReply, LearnedBatch

log = logging.getLogger("engram.driver")


class LearnerHandle(Protocol):
    """The learner as the driver sees it: a :class:`~learners.endpoint.LearnerEndpoint` in this
    process, or a :class:`~learners.remote_learner.RemoteLearner` proxy of one in a Ray actor."""

    updates: int

    def receive(self, rollout_refs: list, version: int) -> EndpointReply: ...

    def publish(self, version: int) -> PublishedWeights: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def exploration_telemetry(self, samples: bool) -> dict: ...

    def close(self) -> None: ...


class RecentRollouts:
    """The last batch's rollouts, fetched from the object store only when telemetry asks."""

    def __init__(self, refs: list):
        self._refs = refs
        self._rollouts: list[wire.Rollout] | None = None

    def load(self) -> list[wire.Rollout]:
        if self._rollouts is None:
            self._rollouts = [wire.decode(payload) for payload in ray.get(self._refs)]
        return self._rollouts


@dataclass(kw_only=True)
class DriverSettings:
    """What the driver runs by; ``engram.build.driver_settings`` fills it from the config,
    which owns every default."""

    num_actors: int
    rollouts_per_update: int
    total_steps: int
    unroll_length: int
    actor_num_cpus: float
    actor_torch_threads: int
    max_actor_restarts: int
    seed: int


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
        on_update: ``on_update(progress, metrics, recent)`` after each learner step, ``recent``
            a :class:`RecentRollouts` of the batch learned from.
        should_stop: polled between updates (e.g. a signal handler's flag).
        worker_class: the actor's class (a :class:`RolloutWorker` or a subclass).
    """

    def __init__(
        self,
        settings: DriverSettings,
        learner: LearnerHandle,
        env_factory: Callable[[], Any],
        agent_factory: Callable[[], Any],
        progress: Progress | None = None,
        on_update: Callable[[Progress, dict, RecentRollouts], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        worker_class: type = RolloutWorker,
    ):
        self.settings = settings
        self.learner = learner
        self.env_factory = env_factory
        self.agent_factory = agent_factory
        self.progress = progress or Progress()
        self.on_update = on_update or (lambda progress, metrics, rollouts: None)
        self.should_stop = should_stop
        self._remote_worker = ray.remote(num_cpus=settings.actor_num_cpus, max_restarts=0)(worker_class)
        self._actors: dict[int, Any] = {}
        self._generation: dict[int, int] = {}
        self.version = learner.updates
        self._weights = learner.publish(self.version)
        self._buffered = 0  # good rollouts the learner holds for its next batch
        self._alive_nodes = self._nodes_alive()

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
        receipt, payload = self._actors[actor_id].unroll_with_receipt.options(num_returns=2).remote(self._weights)
        pending[receipt] = (actor_id, payload)

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
        pending: dict = {}  # receipt ref -> (actor id, rollout ref)
        for actor_id in range(s.num_actors):
            self._start_actor(actor_id)
            self._request(actor_id, pending)
        arrived: list[tuple[int, Any]] = []  # (actor id, rollout ref) not yet handed to the learner
        try:
            while self.progress.env_steps < s.total_steps and not self.should_stop():
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for receipt in ready:
                    actor_id, rollout = pending.pop(receipt)
                    try:
                        ray.get(receipt)
                    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as error:
                        self._replace_actor(actor_id, error)
                        self._request(actor_id, pending)
                        continue
                    self._request(actor_id, pending)
                    arrived.append((actor_id, rollout))
                while len(arrived) >= s.rollouts_per_update - self._buffered:
                    needed = s.rollouts_per_update - self._buffered
                    handed, arrived = arrived[:needed], arrived[needed:]
                    self._hand_over(handed)
        finally:
            for actor in self._actors.values():
                ray.kill(actor)
        return self.progress

    def _hand_over(self, handed: list[tuple[int, Any]]) -> None:
        """Pass rollout references to the learner; count what it rejected and what it learned."""
        started = time.perf_counter()
        reply = self.learner.receive([rollout for _, rollout in handed], self.version)
        for position, reason in reply.rejected:
            self.progress.rejected_rollouts += 1
            log.warning("rejected a rollout from actor %d: %s", handed[position][0], reason)
        self._buffered = reply.buffered
        if reply.learned is not None:
            reply.learned.metrics["learner/update_seconds"] = time.perf_counter() - started
            self._count(reply.learned)

    def _count(self, learned: LearnedBatch) -> None:
        self.version += 1
        self._weights = learned.weights
        self.progress.env_steps += learned.env_steps
        self.progress.episodes += len(learned.episode_returns)
        self.progress.recent_returns.extend(learned.episode_returns)
        self.progress.recent_lengths.extend(learned.episode_lengths)
        self.on_update(self.progress, learned.metrics, RecentRollouts(learned.rollout_refs))
