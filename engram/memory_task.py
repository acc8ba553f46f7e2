"""`engram train` for ``run.kind: memory_task``: a core learns copy / associative recall /
priority sort on one process (no Ray), with the same run folder, telemetry and checkpoint
layout as reinforcement-learning runs."""

from __future__ import annotations

from pathlib import Path

import torch

from agents.registry import core_factory
from engram.checkpoint import Checkpointer
from engram.config import Config
from engram.telemetry import Telemetry
from envs.memory_tasks import Curriculum, make_task
from learners.memory_task_trainer import train_memory_task


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
    Checkpointer(directory / "checkpoints", keep=config.checkpoint.keep).save(
        {"format": 1, "config": config.model_dump(mode="json"), "core": core.state_dict(),
         "readout": readout.state_dict(), "result": result},
        result.get("updates", settings.updates),
    )
    return result
