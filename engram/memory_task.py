"""`engram train` for ``run.kind: memory_task``: a core learns copy / associative recall /
priority sort on one process (no Ray), with the same run folder, telemetry and checkpoint
layout as reinforcement-learning runs."""

from __future__ import annotations

from pathlib import Path

import torch

from agents.registry import core_factory
from engram.checkpoint import Checkpointer
from engram.checkpoint_payload import memory_task_payload
from engram.config import Config
from engram.telemetry import Telemetry
from envs.memory_tasks import make_task
from learners.curriculum import Curriculum
from learners.memory_task_trainer import evaluate_levels_of, train_memory_task


def run_memory_task(config: Config, directory: Path) -> dict:
    settings = config.memory_task
    torch.manual_seed(config.run.seed)
    task = make_task(settings.task, **settings.task_options())
    core = core_factory(config.agent.core, task.target_size, config.agent.core_options())(task.input_size)
    readout = torch.nn.Linear(core.output_size, task.target_size)
    telemetry = Telemetry(directory, console=config.telemetry.console, total_steps=settings.updates)

    def log(step: int, metrics: dict) -> None:
        scalars = {name if name.startswith("eval/") else f"task/{name}": value for name, value in metrics.items()}
        telemetry.scalars(step, scalars)
        if config.telemetry.console:
            solved = "  ".join(
                f"L{name.split('_L')[1]} {value:.2f}" for name, value in metrics.items() if name.startswith("eval/solved_L")
            )
            print(
                f"update {step:,}  loss {metrics['loss']:.3f} bits/seq  "
                f"bit errors {metrics['bits_error']:.3f}  level {metrics['level']}"
                + (f"  solved: {solved}" if solved else ""),
                flush=True,
            )

    try:
        result = train_memory_task(
            task=task,
            core=core,
            steps=settings.updates,
            readout=readout,
            time_limit_s=None if settings.time_limit_minutes is None else 60.0 * settings.time_limit_minutes,
            evaluate_levels=tuple(settings.evaluate_levels),
            evaluate_every=settings.evaluate_every,
            evaluate_sequences=settings.evaluate_sequences,
            batch_size=settings.batch_size,
            lr=settings.learning_rate,
            seed=config.run.seed,
            log_fn=log,
            log_every=settings.log_every,
            curriculum=Curriculum(
                start=settings.curriculum_start,
                maximum=settings.curriculum_maximum,
                threshold=settings.curriculum_threshold,
                patience=settings.curriculum_patience,
            ),
        )
    finally:
        telemetry.close()
    Checkpointer.for_run(directory, config.checkpoint).save(
        memory_task_payload(config, core.state_dict(), readout.state_dict(), result),
        result.get("updates", settings.updates),
    )
    return result


def evaluate_memory_task(
    config: Config, payload: dict, path: str, *, levels: list[int] | None, sequences: int, seed: int,
    verbose: bool = True,
) -> dict:
    """Generalisation of a memory-task checkpoint: the share of fresh sequences of each
    level solved without a wrong bit, and the wrong bits per sequence.

    ``levels`` default to the config's ``memory_task.evaluate_levels``, else its curriculum
    maximum. Raises :class:`engram.checkpoint.CheckpointError` when the checkpoint lacks
    the core or readout weights, or they do not fit the config.
    """
    from engram.checkpoint import CheckpointError

    settings = config.memory_task
    if not isinstance(payload.get("core"), dict) or not isinstance(payload.get("readout"), dict):
        raise CheckpointError(
            f"checkpoint {path!r} is from a run.kind: memory_task run but holds no core and readout weights "
            "(runs before the readout was saved cannot be evaluated; train again)"
        )
    levels = list(levels or settings.evaluate_levels or [settings.curriculum_maximum])
    if sequences < 1 or any(level < 1 for level in levels):
        from engram.config import ConfigError

        raise ConfigError(f"need --sequences >= 1 and levels >= 1, got {sequences} and {levels}")
    task = make_task(settings.task, **settings.task_options())
    core = core_factory(config.agent.core, task.target_size, config.agent.core_options())(task.input_size)
    readout = torch.nn.Linear(core.output_size, task.target_size)
    try:
        core.load_state_dict(payload["core"])
        readout.load_state_dict(payload["readout"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path!r}: weights do not fit its config: {error}") from None
    core.eval()
    import numpy as np

    results = evaluate_levels_of(task, core, readout, levels, sequences, np.random.default_rng(seed))
    if verbose:
        print(f"{settings.task} with {config.agent.core}, {sequences} fresh sequences per level (seed {seed})")
        print(f"{'level':>6s} {'solved':>7s} {'wrong bits/seq':>15s}")
        for level in levels:
            print(f"{level:>6d} {results[f'eval/solved_L{level}']:>7.2f} {results[f'eval/bits_error_L{level}']:>15.3f}")
    return {"task": settings.task, "core": config.agent.core, "sequences": sequences, "seed": seed,
            "levels": {level: {"solved": results[f"eval/solved_L{level}"],
                               "bits_error": results[f"eval/bits_error_L{level}"]} for level in levels}}
