"""Checkpoints: atomic rotation, fallback from a corrupt newest file, clear errors."""

import logging
import pickle

import pytest
import torch

from engram.checkpoint import CheckpointError, Checkpointer, load_checkpoint


def test_keeps_the_last_k(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30):
        checkpointer.save({"step": step, "w": torch.full((3,), float(step))}, step)
    assert [p.name for p in checkpointer.paths()] == ["ckpt-000000000020.pt", "ckpt-000000000030.pt"]
    payload, path = checkpointer.load_latest()
    assert payload["step"] == 30 and torch.equal(payload["w"], torch.full((3,), 30.0))
    assert not list(tmp_path.glob(".tmp-*"))


def test_corrupt_newest_falls_back_with_a_warning(tmp_path, caplog):
    checkpointer = Checkpointer(tmp_path, keep=3)
    checkpointer.save({"step": 1}, 1)
    newest = checkpointer.save({"step": 2}, 2)
    newest.write_bytes(newest.read_bytes()[:40])
    with caplog.at_level(logging.WARNING, logger="engram.checkpoint"):
        payload, path = checkpointer.load_latest()
    assert payload["step"] == 1
    assert "unreadable" in caplog.text and newest.name in caplog.text


def test_missing_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpointer(tmp_path / "empty").load_latest()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "ckpt-missing.pt")


class NotATensor:
    pass


def test_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "ckpt-000000000001.pt"
    torch.save({"object": NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
