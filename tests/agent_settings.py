"""The config's agent settings for tests that build agents and cores without a config.

The components take every setting and keep no defaults of their own; ``engram/config.py``
owns them. Tests start from those defaults and change what they test.
"""

from __future__ import annotations

from typing import Any

from agents.registry import build_agent
from engram.config import AgentConfig, LearnerConfig


def agent_options(**overrides: Any) -> dict[str, Any]:
    """``build_agent``'s keyword arguments at the config's defaults. ``core_options`` in
    ``overrides`` is merged key by key over the chosen core's defaults."""
    core_overrides = overrides.pop("core_options", {}) or {}
    config = AgentConfig(**({"core": overrides["core"]} if "core" in overrides else {}))
    options = {
        "torso": config.torso,
        "torso_size": config.torso_size,
        "core": config.core,
        "core_options": config.core_options(),
        "reward_clip": LearnerConfig().reward_clip,
        "init": config.init,
        "center_frames": config.center_frames,
        "feature_norm": config.feature_norm,
    }
    options.update(overrides)
    options["core_options"] = {**options["core_options"], **core_overrides}
    return options


def make_agent(observation_shape, num_actions: int, **overrides: Any):
    """``build_agent`` at the config's defaults but for ``overrides``."""
    return build_agent(tuple(observation_shape), num_actions, **agent_options(**overrides))


def core_options(core: str, **overrides: Any) -> dict[str, Any]:
    """A core's constructor options at the config's defaults but for ``overrides``."""
    return {**AgentConfig(core=core).core_options(), **overrides}
