"""The learner as a Ray actor, for a learner that needs a GPU the driver may not have.

:class:`RemoteLearner` is a proxy with the :class:`~learners.learner.Learner` methods the
driver and the checkpointing use; each call waits for the actor. Rollouts travel to it
through the object store as decoded numpy arrays (no pickle of code, only arrays), and
weights come back as CPU tensors, which the driver publishes to the actors as usual.
"""

from __future__ import annotations

from typing import Callable

import ray

from learners.learner import Learner

LEARNER_CPUS = 1.0  # what the learner actor reserves beside its GPUs


class LearnerHost:
    """Lives in the Ray actor process and owns the real :class:`Learner`."""

    def __init__(self, learner_factory: Callable[[], Learner], torch_threads: int = 1):
        import torch

        torch.set_num_threads(torch_threads)
        self.learner = learner_factory()

    def update(self, rollouts, learner_version):
        return self.learner.update(rollouts, learner_version=learner_version)

    def get_weights(self):
        return self.learner.get_weights()

    def state_dict(self):
        return self.learner.state_dict()

    def load_state_dict(self, state):
        self.learner.load_state_dict(state)

    def counters(self) -> tuple[int, int]:
        return self.learner.updates, self.learner.skipped_updates

    def exploration_telemetry(self, samples: bool):
        return self.learner.exploration_telemetry(samples)


class RemoteLearner:
    """Drives a :class:`LearnerHost` actor that reserves ``num_gpus`` GPUs."""

    def __init__(self, learner_factory: Callable[[], Learner], *, num_gpus: float, num_cpus: float = LEARNER_CPUS,
                 torch_threads: int = 1):
        host = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0)(LearnerHost)
        self._actor = host.remote(learner_factory, torch_threads)
        self.updates, self.skipped_updates = ray.get(self._actor.counters.remote())

    def update(self, rollouts, learner_version=None) -> dict:
        metrics = ray.get(self._actor.update.remote(rollouts, learner_version))
        self.updates, self.skipped_updates = ray.get(self._actor.counters.remote())
        return metrics

    def get_weights(self):
        return ray.get(self._actor.get_weights.remote())

    def state_dict(self) -> dict:
        return ray.get(self._actor.state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        ray.get(self._actor.load_state_dict.remote(state))
        self.updates, self.skipped_updates = ray.get(self._actor.counters.remote())

    def exploration_telemetry(self, samples: bool) -> dict:
        return ray.get(self._actor.exploration_telemetry.remote(samples))

    def close(self) -> None:
        ray.kill(self._actor)
