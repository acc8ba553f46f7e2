"""What may change when a run resumes, checked before ``--resume`` writes anything.

A checkpoint records the config it was trained with. The new config may change how the
run is driven and logged (its length, the resources, telemetry and checkpoints, the
learning rate and the loss weights, the BPTT memory plan, which gives the same
gradients); everything that shapes the model, the data or the optimiser's state (the env,
the agent, the unroll, the optimiser and its constants, the discount, the exploration
bonus, the seed) must match, or the resumed run would silently be another experiment.
"""

from __future__ import annotations

import logging
from typing import Any

from engram.config import Config, ConfigError, from_dict

log = logging.getLogger("engram.resume")

MAY_CHANGE_SECTIONS = ("telemetry.", "checkpoint.", "resources.", "learner.bptt.")
MAY_CHANGE_KEYS = frozenset(
    {
        "run.name",
        "run.runs_root",
        "run.total_steps",
        "learner.learning_rate",  # the learner re-applies it over the restored optimiser state
        "learner.learning_rate_schedule",  # so it does the schedule, from the restored update count
        "learner.grad_clip",
        "learner.entropy_cost",
        "learner.entropy_floor",  # a collapsed run can be resumed with a floor
        "learner.entropy_floor_rate",
        "learner.baseline_cost",
        "learner.max_update_ratio",
        "learner.max_consecutive_skips",
    }
)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and not key.endswith("options"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def may_change(key: str) -> bool:
    return key in MAY_CHANGE_KEYS or key.startswith(MAY_CHANGE_SECTIONS)


def config_changes(saved: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved value, new value)}`` for every setting that differs."""
    before, after = _flatten(saved.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
    return {key: (before.get(key), after.get(key)) for key in sorted(before | after) if before.get(key) != after.get(key)}


def check_resume(payload: dict, new: Config, checkpoint_name: str) -> dict[str, tuple[Any, Any]]:
    """Refuse a resume whose config changes what may not change; return the changes it applies."""
    try:
        saved = from_dict(payload["config"])
    except (ConfigError, KeyError, TypeError) as error:
        raise ConfigError(f"--resume: the config stored in {checkpoint_name} cannot be read ({error})") from None
    changes = config_changes(saved, new)
    refused = {key: change for key, change in changes.items() if not may_change(key)}
    if refused:
        listed = "\n  ".join(f"{key}: {old!r} in the checkpoint, {value!r} now" for key, (old, value) in refused.items())
        raise ConfigError(
            f"--resume: {checkpoint_name} was trained with other settings that cannot change mid-run:\n  {listed}\n"
            "Resume with the run's own config (its config.yaml), or start a new run in another --run-dir"
        )
    reached = int(payload.get("progress", {}).get("env_steps", 0))
    if new.run.total_steps <= reached:
        raise ConfigError(
            f"--resume: run.total_steps ({new.run.total_steps:,}) is already reached; {checkpoint_name} is at "
            f"{reached:,} steps. Raise run.total_steps to train on"
        )
    for key, (old, value) in changes.items():
        log.info("resume: %s changes from %r to %r", key, old, value)
    return changes
