"""Checkpoints: atomic rotation, fallback from a corrupt newest file, clear errors."""

import logging

import pytest
import torch

from engram.checkpoint import CheckpointError, Checkpointer, load_checkpoint, newest_in


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
    with pytest.raises(CheckpointError, match="beyond tensors and plain data"):
        load_checkpoint(path)


def test_an_unreadable_newest_file_is_set_aside_and_never_costs_the_new_save(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=1)
    checkpointer.save({"step": 5}, 5)
    broken = tmp_path / "ckpt-000000000900.pt"  # a higher step than the run will reach next
    broken.write_bytes(b"not a checkpoint")
    payload, _ = checkpointer.load_latest()  # --resume falls back to step 5
    assert payload["step"] == 5
    assert (tmp_path / "ckpt-000000000900.pt.corrupt").is_file() and not broken.exists()
    written = checkpointer.save({"step": 6}, 6)
    assert checkpointer.paths() == [written]
    assert checkpointer.load_latest()[0]["step"] == 6


def test_rotation_never_deletes_the_file_just_written_even_below_a_newer_one(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=1)
    checkpointer.save({"step": 900}, 900)  # readable, from a run that later restarted earlier
    written = checkpointer.save({"step": 6}, 6)
    assert written.exists()


def test_a_crashed_write_leaves_no_checkpoint_and_its_temporary_is_removed(tmp_path, monkeypatch):
    checkpointer = Checkpointer(tmp_path, keep=3)
    checkpointer.save({"step": 1}, 1)

    def crash_midway(payload, stream):
        stream.write(b"half a checkpoint")
        stream.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save({"step": 2}, 2)
    assert [p.name for p in checkpointer.paths()] == ["ckpt-000000000001.pt"]  # nothing written in place
    leftover = tmp_path / ".tmp-crashed.pt"  # as a SIGKILL mid-write would leave it
    leftover.write_bytes(b"partial")
    Checkpointer(tmp_path, keep=3)
    assert not leftover.exists()


def test_the_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    import os
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b)))
    Checkpointer(tmp_path).save({"step": 1}, 1)
    assert events == ["file", "rename", "dir"]


def test_a_folder_and_a_foreign_file_are_named_for_what_they_are(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    with pytest.raises(CheckpointError, match=r"not a checkpoint file \(torch.load failed with KeyError"):
        load_checkpoint(text)


def test_newest_in_finds_a_run_folders_latest_checkpoint(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    checkpointer.save({"step": 1}, 1)
    newest = checkpointer.save({"step": 2}, 2)
    assert newest_in(tmp_path) == newest
    assert newest_in(tmp_path / "checkpoints") == newest
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no ckpt-\*.pt in it"):
        newest_in(tmp_path / "empty")


def test_the_first_checkpoint_past_each_milestone_survives_rotation(tmp_path):
    checkpointer = Checkpointer(tmp_path, keep=2, keep_every_steps=100)
    for step in (40, 90, 130, 160, 190, 210, 250, 280):
        checkpointer.save({"step": step}, step)
    kept = [int(p.stem.split("-")[1]) for p in checkpointer.paths()]
    assert kept == [130, 210, 250, 280]  # the milestones past 100 and 200, then the newest two
    assert checkpointer.load_latest()[0]["step"] == 280
    plain = Checkpointer(tmp_path / "plain", keep=2)
    for step in (40, 130, 210, 280):
        plain.save({"step": step}, step)
    assert [int(p.stem.split("-")[1]) for p in plain.paths()] == [210, 280]


def test_a_run_folder_rotates_as_its_config_says(tmp_path):
    from engram.config import load_config

    settings = load_config("configs/smoke.yaml", ["checkpoint.keep=1", "checkpoint.keep_every_steps=50"]).checkpoint
    checkpointer = Checkpointer.for_run(tmp_path, settings)
    assert checkpointer.directory == tmp_path / "checkpoints"
    assert (checkpointer.keep, checkpointer.keep_every_steps) == (1, 50)
