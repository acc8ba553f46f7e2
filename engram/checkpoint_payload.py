"""What a checkpoint holds: the payload's format, built and checked in one place.

``engram.checkpoint`` moves bytes (atomic writes, rotation, fallback); this module says
what those bytes mean. Every payload records ``format`` (this module's :data:`FORMAT`) and
the resolved ``config`` it was trained with. By run kind:

* ``rl``: ``learner`` (``agent`` and ``optimizer`` state dicts, ``updates``,
  ``skipped_updates``, and ``intrinsic_rewards`` with an exploration bonus), ``progress``
  (the driver's counters) and ``rng`` (``torch`` state and ``python`` state);
* ``memory_task``: ``core`` and ``readout`` state dicts and the trainer's ``result``;
* ``density``: the density ``model``'s state dict and the trainer's ``result``;
* ``text``: the character ``model``'s state dict (core and readout) and the trainer's ``result``.

:func:`read_payload` checks a loaded payload before anyone uses it and raises
:class:`~engram.checkpoint.CheckpointError` naming what is missing or from another version.
"""

from __future__ import annotations

import random

import torch

from engram.checkpoint import CheckpointError

FORMAT = 1


def rl_payload(config, learner_state: dict, progress_state: dict) -> dict:
    """An RL run's checkpoint, with this process's random state."""
    return {
        "format": FORMAT,
        "config": config.model_dump(mode="json"),
        "learner": learner_state,
        "progress": progress_state,
        "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])},
    }


def memory_task_payload(config, core_state: dict, readout_state: dict, result: dict) -> dict:
    return {
        "format": FORMAT,
        "config": config.model_dump(mode="json"),
        "core": core_state,
        "readout": readout_state,
        "result": result,
    }


def model_payload(config, model_state: dict, result: dict) -> dict:
    """A one-model run's checkpoint (``density``, ``text``)."""
    return {"format": FORMAT, "config": config.model_dump(mode="json"), "model": model_state, "result": result}


def restore_rng(payload: dict) -> None:
    """Put back the random state an RL checkpoint recorded."""
    torch.set_rng_state(payload["rng"]["torch"])
    random.setstate((3, tuple(payload["rng"]["python"]), None))


def run_kind(payload: dict) -> str:
    return payload["config"].get("run", {}).get("kind", "rl")


def read_payload(payload, source: str, *, kind: str | None = None, resumable: bool = False) -> dict:
    """``payload`` if it is a checkpoint of this format (and of run ``kind``, if given);
    ``resumable`` also asks for what ``--resume`` restores (optimiser, counters, random state)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"checkpoint {source!r} holds no engram config (is it an engram ckpt-*.pt file?)")
    found = payload.get("format")
    if found != FORMAT:
        raise CheckpointError(
            f"checkpoint {source!r} has format {found!r}; this engram reads format {FORMAT} "
            "(use the engram version that wrote it, or train again)"
        )
    found_kind = run_kind(payload)
    if kind is not None and found_kind != kind:
        raise CheckpointError(f"checkpoint {source!r} is from a run.kind: {found_kind} run, not {kind}")
    missing = []
    if found_kind == "rl":
        learner = payload.get("learner")
        if not isinstance(learner, dict) or not isinstance(learner.get("agent"), dict):
            missing.append("learner.agent")
        if resumable:
            if not isinstance(learner, dict) or not isinstance(learner.get("optimizer"), dict):
                missing.append("learner.optimizer")
            if not isinstance(payload.get("progress"), dict):
                missing.append("progress")
            rng = payload.get("rng")
            if not isinstance(rng, dict) or "torch" not in rng or "python" not in rng:
                missing.append("rng")
    if found_kind in ("density", "text") and not isinstance(payload.get("model"), dict):
        missing.append("model")
    if missing:
        raise CheckpointError(f"checkpoint {source!r} lacks {', '.join(missing)}")
    return payload
