"""The learner as Ray actors: one for a learner that needs a GPU the driver may not have, or
N data-parallel replicas (``resources.num_learners``).

:class:`RemoteLearner` answers the driver's calls as a :class:`~learners.endpoint.LearnerEndpoint`
in the driver's process would, by calling endpoints in Ray actors. The rollouts' object
references travel to the actors, which fetch the rollouts from the nodes that hold them; the
weights are put in the object store by the first replica. The driver sees references and
counters only.

With N replicas each endpoint batches its share of every update (whole rollouts), the
replicas join one ``torch.distributed`` group (gloo on CPU, NCCL on GPU) and sum their
gradients (:mod:`learners.data_parallel`); they start from the first replica's weights, and
identical steps keep them identical. A checkpoint holds the first replica's state, the same
payload as one learner's, so a run can resume with another ``num_learners``.

If an actor dies (its node lost, the process killed, the GPU gone), the next call raises
:class:`~learners.errors.LearnerLost`, which names the cause; the run stops and ``--resume``
continues it from the last checkpoint.
"""

from __future__ import annotations

from typing import Callable

import ray

from actors.rollout import PublishedWeights
from learners.endpoint import EndpointReply, LearnedBatch, LearnerEndpoint
from learners.errors import LearnerLost


class _EndpointHost:
    """The Ray actor: builds its endpoint in its own process (on the GPU's node) and serves it."""

    def __init__(self, endpoint_factory: Callable[..., LearnerEndpoint], torch_threads: int):
        import torch

        torch.set_num_threads(torch_threads)
        self.endpoint_factory = endpoint_factory
        self.endpoint: LearnerEndpoint | None = None
        self.meeting = None  # the store the replicas' group meets at, on the first replica

    def host_meeting(self) -> tuple[str, int]:
        """Open the store where the replicas' group meets; its address for the other replicas."""
        from learners.data_parallel import host_meeting

        host = ray.util.get_node_ip_address()
        self.meeting = host_meeting(host)
        return host, self.meeting.port

    def start(self, rank: int, world: int, address: tuple[str, int] | None, device: str) -> None:
        """Build the endpoint: alone, or as replica ``rank`` of ``world`` meeting at ``address``."""
        replicas = None
        if world > 1:
            import torch

            from learners.data_parallel import ReplicaSum, join_replicas

            backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
            join_replicas(backend, rank, world, address, hosted=self.meeting)
            replicas = ReplicaSum(device=device if backend == "nccl" else "cpu")
        self.endpoint = self.endpoint_factory(replicas=replicas)

    def receive(self, rollout_refs: list, version: int) -> EndpointReply:
        return self.endpoint.receive(rollout_refs, version)

    def accept(self, rollout_refs: list, version: int) -> EndpointReply:
        return self.endpoint.accept(rollout_refs, version)

    def learn(self, version: int, publish: bool) -> LearnedBatch:
        return self.endpoint.learn(version, publish=publish)

    def publish(self, version: int) -> PublishedWeights:
        return self.endpoint.publish(version)

    def state_dict(self) -> dict:
        return self.endpoint.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.endpoint.load_state_dict(state)

    def exploration_telemetry(self, samples: bool) -> dict:
        return self.endpoint.exploration_telemetry(samples)

    def counters(self) -> tuple[int, int]:
        return self.endpoint.counters()

    def share(self) -> int:
        return self.endpoint.rollouts_per_update


class RemoteLearner:
    """Drives ``num_learners`` endpoint actors, each reserving ``num_gpus`` GPUs and ``num_cpus`` CPUs.

    ``endpoint_factory(replicas=...)`` builds one replica's endpoint in its actor.
    """

    def __init__(self, endpoint_factory: Callable[..., LearnerEndpoint], *, num_learners: int = 1,
                 device: str = "cpu", num_gpus: float = 0.0, num_cpus: float = 1.0, torch_threads: int = 1):
        host = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0)(_EndpointHost)
        self._replicas = [host.remote(endpoint_factory, torch_threads) for _ in range(num_learners)]
        address = self._call(self._replicas[0].host_meeting.remote()) if num_learners > 1 else None
        self._call([r.start.remote(rank, num_learners, address, device) for rank, r in enumerate(self._replicas)])
        if num_learners > 1:  # every replica starts from the first one's weights
            self._load_everywhere(self._call(self._replicas[0].state_dict.remote()))
        self._share = self._call(self._replicas[0].share.remote())  # rollouts per replica per update
        self._buffered = [0] * num_learners  # good rollouts each replica holds
        self.updates, self.skipped_updates = self._call(self._replicas[0].counters.remote())

    def _call(self, refs):
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as error:
            raise LearnerLost(
                f"a learner's Ray actor died ({type(error).__name__}: {error}); its node may have left the "
                "cluster. The run stops here: continue it from the last checkpoint with `engram train ... --resume`."
            ) from error

    def _load_everywhere(self, state: dict) -> None:
        self._call([r.load_state_dict.remote(state) for r in self._replicas])

    def receive(self, rollout_refs: list, version: int) -> EndpointReply:
        if len(self._replicas) == 1:
            reply = self._call(self._replicas[0].receive.remote(rollout_refs, version))
        else:
            reply = self._receive_split(rollout_refs, version)
        self.updates, self.skipped_updates = reply.updates, reply.skipped_updates
        return reply

    def _receive_split(self, rollout_refs: list, version: int) -> EndpointReply:
        """Hand each replica the rollouts its share still lacks; once every share is full, all
        replicas learn together (their all-reduce needs every one of them)."""
        assigned: list[list[int]] = [[] for _ in self._replicas]
        remaining = list(range(len(rollout_refs)))
        for rank, held in enumerate(self._buffered):
            count = max(self._share - held, 0)
            assigned[rank], remaining = remaining[:count], remaining[count:]
        assigned[0] += remaining  # more than the shares lack: the first replica holds them for later
        calls = {rank: r.accept.remote([rollout_refs[i] for i in assigned[rank]], version)
                 for rank, r in enumerate(self._replicas) if assigned[rank]}
        reply = EndpointReply(updates=self.updates, skipped_updates=self.skipped_updates)
        for rank, accepted in zip(calls, self._call(list(calls.values()))):
            reply.rejected += [(assigned[rank][position], reason) for position, reason in accepted.rejected]
            self._buffered[rank] = accepted.buffered
        if all(held >= self._share for held in self._buffered):
            learned = self._call([r.learn.remote(version, rank == 0) for rank, r in enumerate(self._replicas)])
            reply.learned = _combined(learned)
            self._buffered = [held - self._share for held in self._buffered]
            reply.updates, reply.skipped_updates = self._call(self._replicas[0].counters.remote())
        reply.buffered = sum(min(held, self._share) for held in self._buffered)
        return reply

    def publish(self, version: int) -> PublishedWeights:
        return self._call(self._replicas[0].publish.remote(version))

    def state_dict(self) -> dict:
        return self._call(self._replicas[0].state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        self._load_everywhere(state)
        self.updates, self.skipped_updates = self._call(self._replicas[0].counters.remote())

    def exploration_telemetry(self, samples: bool) -> dict:
        return self._call(self._replicas[0].exploration_telemetry.remote(samples))

    def replica_states(self) -> list[dict]:
        """Every replica's state (tests check that they stay identical)."""
        return self._call([r.state_dict.remote() for r in self._replicas])

    def close(self) -> None:
        for replica in self._replicas:
            ray.kill(replica)


def _combined(learned: list[LearnedBatch]) -> LearnedBatch:
    """The replicas' updates as one: the first one's metrics (its loss terms are already the
    whole batch's sums) and weights, everyone's counts and rollouts."""
    first = learned[0]
    return LearnedBatch(
        metrics=first.metrics,
        env_steps=sum(batch.env_steps for batch in learned),
        episode_returns=[value for batch in learned for value in batch.episode_returns],
        episode_lengths=[value for batch in learned for value in batch.episode_lengths],
        rollout_refs=[ref for batch in learned for ref in batch.rollout_refs],
        weights=first.weights,
    )
