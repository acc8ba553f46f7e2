"""Turn the per-step telemetry that cores put in rollouts into dashboard records.

Rollouts carry ``telemetry[name]`` arrays ``[T+1, B, ...]`` (see ``CoreOutput.telemetry``).
Per-sequence values ``[T+1, B]`` become scalars ``core/<name>`` (their mean). Two names
get special treatment because STRAW's users ask for them:

* ``macro_length``: non-zero entries are the lengths of finished macro-actions; they go to
  a histogram ``straw/macro_action_length`` (and ``replan`` is reported as
  ``straw/replan_rate``);
* ``plan`` ``[T+1, B, R, P]`` with ``commitment`` ``[T+1, B, P]`` and ``replan``: with
  ``pictures``, env 0's newest action plan (actions named), its commitment plan and its
  re-plans over the newest rollout, drawn by :mod:`engram.plan_picture` as ``straw/plan``;
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


MEMORY_ACCESS = ("read_rows", "read_weights", "write_rows", "write_weights")


def summarise(rollouts, *, pictures: bool = False, action_names: list[str] | None = None, where: str = "") -> CoreSummary:
    """``pictures``: also draw the figures that cost a plotting library call (plans, memory
    access); ``action_names`` label the plan's rows (``action <i>`` without them); ``where``
    (e.g. ``"pong, agent step 1,200,000"``) starts the pictures' captions."""
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
    newest = rollouts[-1]
    caption = f"{where + ': ' if where else ''}env 0 of actor {newest.actor_id}, policy v{newest.policy_version}"
    if pictures and "plan" in names:
        from engram import plan_picture

        num_actions = newest.behaviour_logits.shape[-1]
        labels = action_names if action_names is not None else [f"action {i}" for i in range(num_actions)]
        summary.images["straw/plan"] = plan_picture.draw(newest.telemetry, newest.actions, labels, env=0,
                                                         title=f"STRAW plans, {caption}")
    if pictures and all(name in names for name in MEMORY_ACCESS):
        from engram import memory_picture

        title = f"memory access: {caption}"
        summary.images["memory/access"] = memory_picture.draw(newest.telemetry, env=0, title=title)
    return summary
