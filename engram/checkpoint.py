"""Atomic, rotating checkpoints.

Each checkpoint is written to a temporary file in the same folder, flushed to disk and
renamed into place, so a crash mid-write never leaves a half-written ``ckpt-*.pt``.
Loading uses ``torch.load(weights_only=True)`` (no pickle code runs) and falls back from
a corrupt newest checkpoint to the previous one with a warning.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import torch

log = logging.getLogger("engram.checkpoint")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected."""


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 3):
        self.directory = Path(directory)
        self.keep = keep

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
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        return target

    def load_latest(self) -> tuple[dict, Path]:
        """The newest readable checkpoint; raises :class:`CheckpointError` if there is none."""
        candidates = list(reversed(self.paths()))
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        for path in candidates:
            try:
                return load_checkpoint(path), path
            except Exception as error:
                log.warning("checkpoint %s is unreadable (%s); trying the previous one", path, error)
        raise CheckpointError(f"every checkpoint in {self.directory} is unreadable")


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)
