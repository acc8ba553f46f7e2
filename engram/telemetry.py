"""Telemetry: TensorBoard event files, ``metrics.jsonl``, and the console progress line.

Scalar names are stable, so dashboards and scripts can rely on them:

* ``episode/return_mean100``, ``episode/length_mean100`` (raw game score), and
  ``frames/episode_return_mean100``: the same return with ALE frames, not agent steps, on
  the x-axis (how Atari results are published and compared)
* ``throughput/env_frames_per_s``, ``throughput/env_steps_per_s``,
  ``throughput/learner_updates_per_s``
* ``learner/policy_lag``, ``learner/grad_norm``, ``learner/learning_rate``,
  ``learner/skipped_updates``
* ``loss/policy``, ``loss/value``, ``loss/entropy`` (and ``loss/<aux>`` from cores)
* ``runtime/actor_restarts``, ``runtime/nodes_lost``, ``runtime/rejected_rollouts``
* ``torso/alive/<layer>``: the share of each torso ReLU's units that fire on the batch's
  first frames (``learners/torso_health.py``)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np


class Telemetry:
    def __init__(self, run_dir: str | Path, *, console: bool = True, total_steps: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir))
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self._console = console
        self._total_steps = total_steps
        self._live = None
        if console and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._live = Progress(
                TextColumn("[bold]engram"),
                BarColumn(),
                TextColumn("{task.fields[line]}"),
                TimeElapsedColumn(),
            )
            self._task = self._live.add_task("train", total=total_steps, line="starting")
            self._live.start()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write scalars to TensorBoard and one JSON line to ``metrics.jsonl``."""
        record = {"step": step, "time": time.time()}
        for name, value in values.items():
            value = float(value)
            if math.isfinite(value):
                self.writer.add_scalar(name, value, step)
            record[name] = value if math.isfinite(value) else None
        self._metrics.write(json.dumps(record) + "\n")

    def scalar_at_frames(self, frames: int, name: str, value: float) -> None:
        """One TensorBoard scalar whose x-axis is ALE frames (``frames/<name>``)."""
        if math.isfinite(value):
            self.writer.add_scalar(f"frames/{name}", value, frames)

    def histogram(self, step: int, name: str, values) -> None:
        values = np.asarray(values)
        if values.size:
            self.writer.add_histogram(name, values, step)

    def image(self, step: int, name: str, image, dataformats: str = "HW") -> None:
        self.writer.add_image(name, image, step, dataformats=dataformats)

    def progress(self, steps: int, frames: int, fps: float, episode_return: float | None) -> None:
        shown = "n/a" if episode_return is None else f"{episode_return:.2f}"
        line = f"steps {steps:,}  frames {frames:,}  fps {fps:,.0f}  return (last 100 episodes) {shown}"
        if self._live is not None:
            self._live.update(self._task, completed=steps, line=line)
        elif self._console:
            print(line, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
        self.writer.flush()
        self.writer.close()
        self._metrics.close()
