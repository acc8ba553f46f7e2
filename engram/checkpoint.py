"""Atomic, rotating checkpoints.

Each checkpoint is written to a temporary file in the same folder, flushed to disk,
renamed into place, and the folder is flushed too, so a crash mid-write never leaves a
half-written ``ckpt-*.pt`` and a finished save survives a power cut. A ``.tmp-*`` left by
a crashed write is removed when the folder is next opened. Loading uses
``torch.load(weights_only=True)`` (no pickle code runs) and falls back from an unreadable
newest checkpoint to the previous one with a warning, setting the unreadable file aside
as ``*.corrupt`` so that rotation never counts it. Rotation never deletes the file it
has just written, nor, with ``keep_every_steps`` = E, the first checkpoint at or past each
multiple of E steps (milestones for probing a run after the fact).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from pathlib import Path

import torch

log = logging.getLogger("engram.checkpoint")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected."""


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 3, keep_every_steps: int | None = None):
        self.directory = Path(directory)
        self.keep = keep
        self.keep_every_steps = keep_every_steps
        for leftover in self.directory.glob(".tmp-*"):
            log.warning("removing %s, left by a checkpoint write that did not finish", leftover)
            leftover.unlink(missing_ok=True)

    @classmethod
    def for_run(cls, run_dir: str | Path, settings) -> Checkpointer:
        """The checkpoints of a run folder, rotated as its ``checkpoint`` config section says."""
        return cls(Path(run_dir) / "checkpoints", keep=settings.keep, keep_every_steps=settings.keep_every_steps)

    def paths(self) -> list[Path]:
        """Existing checkpoints, oldest first."""
        return sorted(self.directory.glob("ckpt-*.pt"))

    def save(self, payload: dict, step: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"ckpt-{step:012d}.pt"
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(payload, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
            _fsync_directory(self.directory)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        milestones = self.milestones()
        others = [path for path in self.paths() if path != target and path not in milestones]
        for old in others[: max(len(others) - (self.keep - 1), 0)]:
            old.unlink(missing_ok=True)
        return target

    def milestones(self) -> set[Path]:
        """The first checkpoint at or past each multiple of ``keep_every_steps`` (none when unset)."""
        if not self.keep_every_steps:
            return set()
        first_in_stretch = {}
        for path in self.paths():  # oldest first
            stretch = step_of(path) // self.keep_every_steps
            if stretch > 0:
                first_in_stretch.setdefault(stretch, path)
        return set(first_in_stretch.values())

    def load_latest(self) -> tuple[dict, Path]:
        """The newest readable checkpoint; raises :class:`CheckpointError` if there is none."""
        candidates = list(reversed(self.paths()))
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        for path in candidates:
            try:
                return load_checkpoint(path), path
            except Exception as error:
                aside = path.with_name(path.name + ".corrupt")
                log.warning("checkpoint %s is unreadable (%s); set aside as %s, trying the previous one", path, error, aside.name)
                os.replace(path, aside)
        raise CheckpointError(f"every checkpoint in {self.directory} is unreadable (set aside as *.corrupt)")


def step_of(path: Path) -> int:
    """The step count in a checkpoint's name, ``ckpt-<steps>.pt``."""
    return int(path.stem.split("-")[1])


def _fsync_directory(directory: Path) -> None:
    """Flush the folder's entries, so the rename itself is on disk."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def newest_in(directory: str | Path) -> Path:
    """The newest ``ckpt-*.pt`` of a run folder (in its ``checkpoints/``) or of a checkpoints folder."""
    directory = Path(directory)
    found = sorted((directory / "checkpoints").glob("ckpt-*.pt")) or sorted(directory.glob("ckpt-*.pt"))
    if not found:
        raise CheckpointError(
            f"{str(directory)!r} is a folder with no ckpt-*.pt in it or in its checkpoints/: "
            "pass a checkpoint file, or a run folder that holds one"
        )
    return found[-1]


def load_checkpoint(path: str | Path) -> dict:
    """Read one checkpoint file; :class:`CheckpointError` names the file and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder, not a checkpoint file (see newest_in)")
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise CheckpointError(
                f"{str(path)!r} holds Python objects beyond tensors and plain data; checkpoints are loaded with "
                "weights_only=True, so code inside a file never runs (was it written by engram?)"
            ) from None
        raise CheckpointError(f"{str(path)!r} is unreadable: truncated, or not a checkpoint ({error})") from None
    except Exception as error:  # torch.load raises KeyError, RuntimeError, EOFError... for foreign files
        raise CheckpointError(
            f"{str(path)!r} is unreadable: truncated, or not a checkpoint file "
            f"(torch.load failed with {type(error).__name__}: {error})"
        ) from None
