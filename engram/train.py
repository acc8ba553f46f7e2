"""`engram train`: validate the config, prepare the run folder, start Ray, run the driver.

Run folder layout: ``config.yaml`` (the resolved config), TensorBoard event files,
``metrics.jsonl``, ``checkpoints/ckpt-<steps>.pt``. A run folder that already holds
checkpoints is only reused with ``--resume``, so a second run never overwrites the first.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from engram import build, checkpoint_payload, core_telemetry, preflight
from engram.checkpoint import Checkpointer
from engram.config import Config, ConfigError, dump_config
from engram.resume import check_resume
from engram.telemetry import Telemetry
from envs.registry import action_names
from learners.driver import Driver, LearnerHandle, Progress, RecentRollouts

log = logging.getLogger("engram.train")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals that stop a run cleanly: the update in flight finishes and a checkpoint is written."""


def resolve_run_dir(config: Config, run_dir: str | None) -> Path:
    return Path(run_dir) if run_dir else Path(config.run.runs_root) / config.run.name


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to reuse a run folder without ``--resume``, or to resume one with nothing to resume."""
    checkpoints = list((run_dir / "checkpoints").glob("ckpt-*.pt"))
    if resume and not checkpoints:
        raise ConfigError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    if not resume and checkpoints:
        raise ConfigError(f"run folder {run_dir} already holds checkpoints: pass --resume, or choose another --run-dir")
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ConfigError(
            f"run folder {run_dir} already holds a run's metrics.jsonl (no checkpoint yet): "
            "choose another --run-dir, or delete the folder"
        )


def write_run_config(run_dir: Path, config: Config) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config))


def _init_ray(address: str | None, worker_niceness: int = 0) -> bool:
    """Join ``address`` or start an embedded local Ray; True if this process started it.

    Without ``address`` a new local Ray always starts (``address="local"``): a plain
    ``ray.init()`` would join any cluster already running on the machine, found
    through ``RAY_ADDRESS`` or the address file Ray leaves in its temp folder. A local Ray
    starts its workers (the rollout actors) at ``worker_niceness``; Ray's own default, 15,
    starves the actors behind the learner on a busy machine. A cluster's nodes keep the
    niceness they were started with (``RAY_worker_niceness``; docs/cluster.md).
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(
            address="local", include_dashboard=False, log_to_driver=True,
            _system_config={"worker_niceness": worker_niceness},
        )
    return True


class _TrainingHooks:
    """Telemetry and checkpoints, called by the driver after each learner update."""

    def __init__(self, config: Config, telemetry: Telemetry, checkpointer: Checkpointer, learner: LearnerHandle):
        self.config = config
        self.telemetry = telemetry
        self.checkpointer = checkpointer
        self.learner = learner
        self._last_log = self._last_checkpoint = time.monotonic()
        self._last_steps = None
        self._last_updates = learner.updates
        self._recent: RecentRollouts | None = None
        self.last_metrics: dict = {}
        self._last_samples = self._last_pictures = float("-inf")
        self._action_names: list[str] | None = None

    def __call__(self, progress: Progress, metrics: dict, recent: RecentRollouts) -> None:
        now = time.monotonic()
        self._recent = recent
        self.last_metrics = metrics
        if self._last_steps is None:
            self._last_steps = progress.env_steps
        if now - self._last_log >= self.config.telemetry.log_interval_s:
            self.log(progress, metrics, now)
        if now - self._last_checkpoint >= self.config.checkpoint.interval_s:
            self.checkpoint(progress)

    def log(self, progress: Progress, metrics: dict, now: float | None = None) -> None:
        now = now or time.monotonic()
        elapsed = max(now - self._last_log, 1e-9)
        steps_per_s = (progress.env_steps - (self._last_steps or 0)) / elapsed
        frames_per_step = self.config.env.frames_per_step
        episode_return = float(np.mean(progress.recent_returns)) if progress.recent_returns else None
        scalars = dict(metrics)
        scalars.update(
            {
                "throughput/env_steps_per_s": steps_per_s,
                "throughput/env_frames_per_s": steps_per_s * frames_per_step,
                "throughput/learner_updates_per_s": (self.learner.updates - self._last_updates) / elapsed,
                "runtime/actor_restarts": progress.actor_restarts,
                "runtime/nodes_lost": progress.nodes_lost,
                "runtime/rejected_rollouts": progress.rejected_rollouts,
                "runtime/episodes": progress.episodes,
            }
        )
        if episode_return is not None:
            scalars["episode/return_mean100"] = episode_return
            scalars["episode/length_mean100"] = float(np.mean(progress.recent_lengths))
            self.telemetry.scalar_at_frames(progress.env_steps * frames_per_step, "episode_return_mean100", episode_return)
        pictures = now - self._last_pictures >= self.config.telemetry.picture_interval_s
        rollouts = self._recent.load() if self._recent is not None else []  # fetched for telemetry only
        summary = core_telemetry.summarise(rollouts, pictures=pictures, action_names=self._names_of_actions(rollouts),
                                           where=f"{self._env_label()}, agent step {progress.env_steps:,}")
        if pictures:
            self._last_pictures = now
        scalars.update(summary.scalars)
        self.telemetry.scalars(progress.env_steps, scalars)
        for name, values in summary.histograms.items():
            self.telemetry.histogram(progress.env_steps, name, values)
        for name, image in summary.images.items():
            self.telemetry.image(progress.env_steps, name, image, dataformats="HWC" if image.ndim == 3 else "HW")
        self._log_exploration(progress.env_steps, now)
        self.telemetry.progress(
            progress.env_steps, progress.env_steps * frames_per_step, steps_per_s * frames_per_step, episode_return
        )
        self._last_log, self._last_steps, self._last_updates = now, progress.env_steps, self.learner.updates

    def _names_of_actions(self, rollouts: list) -> list[str] | None:
        if self._action_names is None and rollouts:
            num_actions = rollouts[0].behaviour_logits.shape[-1]
            env = self.config.env
            self._action_names = action_names(env.kind, num_actions, env.factory_options())
        return self._action_names

    def _env_label(self) -> str:
        env = self.config.env
        return {"atari": env.atari.game, "popgym": f"popgym {env.popgym.id}"}.get(env.kind, env.kind)

    def _log_exploration(self, step: int, now: float) -> None:
        """The bonus's pictures, from the learner wherever it runs (its scalars come with the metrics)."""
        if self.config.exploration.kind == "none":
            return
        samples = now - self._last_samples >= self.config.exploration.sample_interval_s
        telemetry = self.learner.exploration_telemetry(samples)
        if "pseudo_counts" in telemetry:
            self.telemetry.histogram(step, "exploration/pseudo_counts", telemetry["pseudo_counts"])
        if "samples" in telemetry:
            self.telemetry.image(step, "exploration/density_model_samples", telemetry["samples"])
            self._last_samples = now

    def checkpoint(self, progress: Progress) -> Path:
        payload = checkpoint_payload.rl_payload(self.config, self.learner.state_dict(), progress.state_dict())
        path = self.checkpointer.save(payload, progress.env_steps)
        self._last_checkpoint = time.monotonic()
        log.info("checkpoint written: %s", path)
        return path



ONE_PROCESS_KINDS = ("memory_task", "density", "text")


def run_on_one_process(config: Config, directory: Path, *, resume: bool) -> None:
    """The run kinds trained on one process, without Ray: what can refuse the run (a missing
    package, an unreadable text) is checked before the folder is written, as for RL runs."""
    kind = config.run.kind
    if resume:
        raise ConfigError(f"--resume is not supported for {kind} runs (they take minutes on one process; train again)")
    if kind == "memory_task":
        from engram.memory_task import run_memory_task as run
    elif kind == "density":
        from engram.density import image_set_of
        from engram.density import run_density as run

        image_set_of(config)
    else:
        from engram.text_prediction import corpus_of
        from engram.text_prediction import run_text as run

        corpus_of(config)
    write_run_config(directory, config)
    run(config, directory)


def train(
    config: Config,
    run_dir: str | None = None,
    *,
    resume: bool = False,
    address: str | None = None,
) -> Path:
    """Train ``config``; returns the run folder. Raises :class:`ConfigError` on bad input.

    Everything that can refuse the run (the folder's state, a resume's changed settings,
    an env that cannot be built, a missing device, resources the cluster lacks) is checked
    before the folder is written.
    """
    directory = resolve_run_dir(config, run_dir)
    check_run_dir(directory, resume)
    if config.run.kind in ONE_PROCESS_KINDS:
        run_on_one_process(config, directory, resume=resume)
        return directory
    checkpointer = Checkpointer.for_run(directory, config.checkpoint)
    resumed = None
    if resume:
        resumed = checkpointer.load_latest()
        checkpoint_payload.read_payload(resumed[0], str(resumed[1]), kind="rl", resumable=True)
        check_resume(resumed[0], config, resumed[1].name)
    torch.manual_seed(config.run.seed)
    random.seed(config.run.seed)
    torch.set_num_threads(config.resources.learner_torch_threads)

    spec = preflight.check_env(config)
    preflight.check_learner_device(config)
    make_agent = build.agent_factory(config, spec)
    preflight.check_agent(config, make_agent, spec)
    started_ray = _init_ray(address, config.resources.worker_niceness)
    learner = telemetry = None
    stop_requested = []
    # Ctrl-C, `docker stop` and `ray job stop` all end the run after the update in flight, with a checkpoint.
    previous_handlers = {
        number: signal.signal(number, lambda *_: stop_requested.append(True)) for number in STOP_SIGNALS
    }
    try:
        preflight.check_cluster_resources(config)
        write_run_config(directory, config)
        learner = build.placed_learner(config, make_agent, spec)
        progress = Progress()
        if resumed is not None:
            payload, path = resumed
            learner.load_state_dict(payload["learner"])
            progress.load_state_dict(payload["progress"])
            checkpoint_payload.restore_rng(payload)
            log.info("resumed from %s at %d steps", path, progress.env_steps)

        telemetry = Telemetry(directory, console=config.telemetry.console, total_steps=config.run.total_steps)
        if resumed is not None:
            telemetry.scalars(progress.env_steps, {"run/resumed": 1.0})  # where this telling of the run starts
        hooks = _TrainingHooks(config, telemetry, checkpointer, learner)
        driver = Driver(
            build.driver_settings(config, seed=config.run.seed + progress.env_steps),
            learner,
            build.env_factory(config, seed=config.run.seed),
            make_agent,
            progress=progress,
            on_update=hooks,
            should_stop=lambda: bool(stop_requested),
        )
        driver.run()
        hooks.log(progress, hooks.last_metrics)
        hooks.checkpoint(progress)
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        if telemetry is not None:
            telemetry.close()
        if learner is not None:
            learner.close()
        if started_ray:
            import ray

            ray.shutdown()
    return directory
