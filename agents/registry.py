"""Build an `Agent` from plain settings; the config layer calls this, as do actors."""

from __future__ import annotations

from typing import Any

from agents.agent import Agent
from agents.core_names import CORES, MEMORY_CORES, STRAW_VARIANTS
from agents.initialisation import initialise
from agents.lstm_core import LSTMCore
from agents.torsos import TORSOS


def core_factory(core: str, num_actions: int, options: dict[str, Any]):
    """``core_factory(...)(input_size) -> RecurrentCore``."""
    if core == "lstm":
        return lambda input_size: LSTMCore(input_size, **options)
    if core in STRAW_VARIANTS:
        from agents.straw import StrawCore

        return lambda input_size: StrawCore(input_size, num_actions, variant=core, **options)
    if core in MEMORY_CORES:
        from agents import sam

        core_class = {"sam": sam.SAMCore, "sdnc": sam.SDNCCore, "dam": sam.DAMCore, "ntm": sam.NTMCore}[core]
        return lambda input_size: core_class(input_size, **options)
    raise ValueError(f"unknown core {core!r}; known cores: {', '.join(CORES)}")




def build_agent(
    observation_shape: tuple[int, ...],
    num_actions: int,
    *,
    torso: str,
    torso_size: int,
    core: str,
    core_options: dict[str, Any],
    reward_clip: float,
    init: str,
    center_frames: str,
    feature_norm: bool,
) -> Agent:
    """The agent the ``agent`` section describes (``engram.build.agent_factory`` passes every
    setting: their defaults live in ``engram/config.py`` only). ``torso="auto"`` picks
    ``shallow`` for image observations and ``mlp`` for vectors."""
    if torso == "auto":
        torso = "shallow" if len(observation_shape) == 3 else "mlp"
    if torso not in TORSOS:
        raise ValueError(f"unknown torso {torso!r}; known torsos: {', '.join(TORSOS)}")
    image_options = {"center_frames": center_frames} if torso in ("shallow", "deep") else {}
    encoder = TORSOS[torso](tuple(observation_shape), output_size=torso_size, **image_options)
    agent = Agent(encoder, core_factory(core, num_actions, dict(core_options)), num_actions, reward_clip,
                  feature_norm=feature_norm)
    initialise(agent, init)
    return agent
