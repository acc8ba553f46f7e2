"""The checkpoint payload's format: what loading checks before anything is restored."""

import pytest
import torch

from engram.checkpoint import CheckpointError
from engram.checkpoint_payload import FORMAT, memory_task_payload, read_payload, rl_payload
from engram.config import load_config


@pytest.fixture
def config():
    return load_config("configs/smoke.yaml")


def _rl(config):
    return rl_payload(config, {"agent": {"w": torch.zeros(1)}, "optimizer": {"state": {}}}, {"env_steps": 5})


def test_a_payload_of_this_format_reads_back(config):
    payload = _rl(config)
    assert read_payload(payload, "ckpt", kind="rl", resumable=True) is payload


def test_another_format_version_is_named(config):
    payload = _rl(config)
    payload["format"] = FORMAT + 1
    with pytest.raises(CheckpointError, match=rf"has format {FORMAT + 1}; this engram reads format {FORMAT}"):
        read_payload(payload, "ckpt")
    del payload["format"]
    with pytest.raises(CheckpointError, match="has format None"):
        read_payload(payload, "ckpt")


def test_another_run_kind_is_named():
    memory = memory_task_payload(load_config("configs/copy_sam.yaml"), {}, {}, {})
    with pytest.raises(CheckpointError, match="is from a run.kind: memory_task run, not rl"):
        read_payload(memory, "ckpt", kind="rl")


def test_what_resume_needs_is_checked(config):
    payload = _rl(config)
    del payload["rng"]
    del payload["learner"]["optimizer"]
    read_payload(payload, "ckpt", kind="rl")  # enough to play it
    with pytest.raises(CheckpointError, match="lacks learner.optimizer, rng"):
        read_payload(payload, "ckpt", kind="rl", resumable=True)


def test_a_foreign_dict_is_not_a_checkpoint():
    with pytest.raises(CheckpointError, match="holds no engram config"):
        read_payload({"state_dict": {}}, "model.pt")
