"""Checks that a valid config can run *here*, made before a run folder is written.

A config can pass validation and still be impossible on this machine or cluster: options
the environment rejects, a CUDA device that is not there, actors that ask for more CPUs
than any node has. Each check raises :class:`~engram.config.ConfigError` (``engram`` exits
with status 2) naming the setting, what it asks for and what is available.
"""

from __future__ import annotations

import time

import torch

from engram import build
from engram.config import Config, ConfigError


def check_env(config: Config) -> build.EnvSpec:
    """Build one env of the configured kind briefly; its spec, or the env's own complaint."""
    try:
        return build.probe_env(config)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"env.{config.env.kind}: the environment cannot be built with these settings: {error}") from None


def check_agent(config: Config, make_agent, spec: build.EnvSpec) -> None:
    """Build the configured agent once for the env's observations: a torso or core that does
    not fit them is named here, not in a traceback from inside a Ray actor."""
    try:
        make_agent()
    except (TypeError, ValueError) as error:
        agent = config.agent
        raise ConfigError(
            f"agent: torso {agent.torso!r} with core {agent.core!r} cannot be built for env.{config.env.kind}'s "
            f"observations of shape {tuple(spec.observation_shape)}: {error}"
        ) from None


def check_learner_device(config: Config) -> None:
    """A learner in this process must find its device here (a learner actor finds it on its node)."""
    resources = config.resources
    if resources.learner_is_actor:
        return
    try:
        torch.zeros(1, device=resources.learner_device)
    except (AssertionError, RuntimeError) as error:  # a CPU-only build raises AssertionError
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise ConfigError(
            f"resources.learner_device: {resources.learner_device!r} is not usable on this machine "
            f"({visible} CUDA device(s) visible; torch said: {str(error).splitlines()[0]}). "
            "Use learner_device: cpu, or run where that device exists"
        ) from None


def resource_demand(config: Config) -> list[dict[str, float]]:
    """What the run's Ray actors reserve, one bundle per actor (each must fit on one node)."""
    resources = config.resources
    bundles = [{"CPU": resources.cpus_per_actor} for _ in range(resources.num_actors)]
    if resources.learner_is_actor:
        bundles += [{"CPU": resources.learner_cpus, "GPU": resources.learner_gpus}] * resources.num_learners
    return bundles


def _fits(bundle: dict[str, float], offer: dict[str, float]) -> bool:
    return all(offer.get(name, 0.0) + 1e-9 >= amount for name, amount in bundle.items() if amount > 0)


def _total(bundles: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0.0) + amount
    return {name: amount for name, amount in total.items() if amount > 0}


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{resources.get(name, 0.0):g} {name}" for name in ("CPU", "GPU"))


def check_cluster_resources(config: Config, *, wait_s: float | None = None, poll_s: float = 1.0) -> None:
    """Fail fast when Ray could never place the run's actors, and within ``wait_s`` when it
    cannot place them yet (nodes may still be joining, other jobs may hold resources)."""
    import ray

    wait_s = config.resources.wait_for_resources_s if wait_s is None else wait_s
    resources = config.resources
    bundles = resource_demand(config)
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    for bundle in bundles:
        if not any(_fits(bundle, node) for node in nodes):
            largest = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})
            what = "the learner actor (resources.learner_gpus)" if "GPU" in bundle else "each actor (resources.cpus_per_actor)"
            raise ConfigError(
                f"{what} asks for {_describe(bundle)} on one node, and no node of this Ray cluster has that: "
                f"the largest offers {_describe(largest)} ({len(nodes)} node(s), {_describe(ray.cluster_resources())} in all)"
            )
    needed = _total(bundles)
    deadline = time.monotonic() + wait_s
    while True:
        available = ray.available_resources()
        if _fits(needed, available):
            return
        if time.monotonic() >= deadline:
            raise ConfigError(
                f"the run needs {_describe(needed)} at once ({resources.num_actors} actor(s) × "
                f"{resources.cpus_per_actor:g} CPU{' plus the learner actor' if resources.learner_is_actor else ''}); "
                f"after {wait_s:g} s the Ray cluster has {_describe(available)} free of "
                f"{_describe(ray.cluster_resources())}. Lower resources.num_actors or resources.cpus_per_actor, "
                "or add nodes (resources.wait_for_resources_s sets how long to wait)"
            )
        time.sleep(poll_s)
