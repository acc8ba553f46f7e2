"""The learner as a Ray actor, for a learner that needs a GPU the driver may not have.

:class:`RemoteLearner` answers the driver's calls as a :class:`~learners.endpoint.LearnerEndpoint`
in the driver's process would, by calling one in a Ray actor. The rollouts' object references
travel to the actor, which fetches the rollouts from the nodes that hold them; the weights
are put in the object store by the actor. The driver sees references and counters only.

If the actor dies (its node lost, the process killed, the GPU gone), the next call raises
:class:`LearnerLost`, which names the cause; the run stops and ``--resume`` continues it from
the last checkpoint.
"""

from __future__ import annotations

from typing import Callable

import ray

from actors.rollout import PublishedWeights
from learners.endpoint import EndpointReply, LearnerEndpoint
from learners.errors import LearnerLost

LEARNER_CPUS = 1.0  # what the learner actor reserves beside its GPUs


class _EndpointHost:
    """The Ray actor: builds the endpoint in its own process (on the GPU's node) and serves it."""

    def __init__(self, endpoint_factory: Callable[[], LearnerEndpoint], torch_threads: int):
        import torch

        torch.set_num_threads(torch_threads)
        self.endpoint = endpoint_factory()

    def receive(self, rollout_refs: list, version: int) -> EndpointReply:
        return self.endpoint.receive(rollout_refs, version)

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


class RemoteLearner:
    """Drives an endpoint actor that reserves ``num_gpus`` GPUs and ``num_cpus`` CPUs."""

    def __init__(self, endpoint_factory: Callable[[], LearnerEndpoint], *, num_gpus: float,
                 num_cpus: float = LEARNER_CPUS, torch_threads: int = 1):
        actor = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0)(_EndpointHost)
        self._actor = actor.remote(endpoint_factory, torch_threads)
        self.updates, self.skipped_updates = self._call(self._actor.counters.remote())

    def _call(self, ref):
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as error:
            raise LearnerLost(
                f"the learner's Ray actor died ({type(error).__name__}: {error}); its node may have left the "
                "cluster. The run stops here: continue it from the last checkpoint with `engram train ... --resume`."
            ) from error

    def receive(self, rollout_refs: list, version: int) -> EndpointReply:
        reply = self._call(self._actor.receive.remote(rollout_refs, version))
        self.updates, self.skipped_updates = reply.updates, reply.skipped_updates
        return reply

    def publish(self, version: int) -> PublishedWeights:
        return self._call(self._actor.publish.remote(version))

    def state_dict(self) -> dict:
        return self._call(self._actor.state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        self._call(self._actor.load_state_dict.remote(state))
        self.updates, self.skipped_updates = self._call(self._actor.counters.remote())

    def exploration_telemetry(self, samples: bool) -> dict:
        return self._call(self._actor.exploration_telemetry.remote(samples))

    def close(self) -> None:
        ray.kill(self._actor)
