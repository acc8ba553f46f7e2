"""Turn the per-step telemetry that cores put in rollouts into dashboard records.

Rollouts carry ``telemetry[name]`` arrays ``[T+1, B, ...]`` (see ``CoreOutput.telemetry``).
Per-sequence values ``[T+1, B]`` become scalars ``core/<name>`` (their mean). Two names
get special treatment because STRAW's users ask for them:

* ``macro_length``: non-zero entries are the lengths of finished macro-actions; they go to
  a histogram ``straw/macro_action_length`` (and ``replan`` is reported as
  ``straw/replan_rate``);
* ``plan`` ``[T+1, B, R, T]`` with ``commitment`` ``[T+1, B, T]``: env 0's newest action
  plan A (rows) stacked over its commitment plan c, as an image ``straw/plan``;
* ``read_rows`` / ``read_weights`` / ``write_rows`` / ``write_weights`` (SAM, SDNC): with
  ``pictures``, env 0's memory access over the newest rollout, drawn by
  :mod:`engram.memory_picture` as the RGB image ``memory/access``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CoreSummary:
    scalars: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # [H, W] in [0, 1], or [H, W, 3] uint8


def _normalise(rows: np.ndarray) -> np.ndarray:
    low, high = float(rows.min()), float(rows.max())
    return (rows - low) / (high - low) if high > low else np.zeros_like(rows)


MEMORY_ACCESS = ("read_rows", "read_weights", "write_rows", "write_weights")


def summarise(rollouts, *, pictures: bool = False) -> CoreSummary:
    """``pictures``: also draw the figures that cost a plotting library call (memory access)."""
    summary = CoreSummary()
    if not rollouts or not rollouts[0].telemetry:
        return summary
    names = rollouts[0].telemetry.keys()
    for name in names:
        # Step T of a rollout is step 0 of the next one: count it once.
        values = np.concatenate([r.telemetry[name][:-1] for r in rollouts], axis=1)
        if name == "macro_length":
            lengths = values[values > 0]
            summary.histograms["straw/macro_action_length"] = lengths
            if lengths.size:
                summary.scalars["straw/macro_action_length_mean"] = float(lengths.mean())
        elif name == "replan":
            summary.scalars["straw/replan_rate"] = float(values.mean())
        elif values.ndim == 2:
            summary.scalars[f"core/{name}"] = float(values.mean())
    if "plan" in names:
        plan = _normalise(rollouts[-1].telemetry["plan"][-1, 0])  # [R, T]
        rows = [plan]
        if "commitment" in names:
            rows.append(np.clip(rollouts[-1].telemetry["commitment"][-1, 0][None], 0.0, 1.0))
        summary.images["straw/plan"] = np.concatenate(rows, axis=0).astype(np.float32)
    if pictures and all(name in names for name in MEMORY_ACCESS):
        from engram import memory_picture

        newest = rollouts[-1]
        title = f"memory access: env 0, actor {newest.actor_id}, policy v{newest.policy_version}"
        summary.images["memory/access"] = memory_picture.draw(newest.telemetry, env=0, title=title)
    return summary
