"""Configs that validate but cannot run here are refused (exit 2) before a run folder exists."""

import time

import pytest
import torch

from engram.cli import main
from engram.config import ConfigError, load_config
from engram.train import train

SMOKE = ["telemetry.console=false", "run.total_steps=500"]


def test_an_unknown_maze_option_is_a_config_error_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"env.maze.options.*unknown maze option 'sise' \(did you mean 'size'\?\)"):
        load_config("configs/maze_lstm.yaml", ["env.maze.options={sise: 9}"])


def test_a_maze_option_the_env_rejects_stops_before_the_folder_is_written(tmp_path):
    config = load_config("configs/maze_lstm.yaml", ["env.maze.options={size: 4}"])
    with pytest.raises(ConfigError, match=r"env.maze: the environment cannot be built.*size"):
        train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_torso_the_observations_are_too_small_for_stops_before_the_folder_is_written(tmp_path):
    """A 5×5 view at pixel scale 3 is 15×15 pixels; the shallow torso's two convs need 20."""
    config = load_config("configs/maze_lstm.yaml", ["env.maze.options={size: 11, view_size: 5, pixel_scale: 3}"])
    with pytest.raises(ConfigError, match=r"agent: torso 'shallow'.*\(3, 15, 15\).*at least 20×20 pixels, got 15×15"):
        train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_an_image_torso_on_vector_observations_is_named(tmp_path):
    config = load_config("configs/smoke.yaml", ["agent.torso=shallow"])
    with pytest.raises(ConfigError, match=r"agent: torso 'shallow'.*takes frames \[C, H, W\].*use the mlp torso"):
        train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
def test_a_missing_cuda_device_exits_2_before_the_folder_is_written(tmp_path, capsys):
    run_dir = tmp_path / "run"
    status = main(["train", "configs/smoke.yaml", "--run-dir", str(run_dir), "--set", "resources.learner_device=cuda:7",
                   *(arg for item in SMOKE for arg in ("--set", item))])
    assert status == 2
    err = capsys.readouterr().err
    assert "resources.learner_device" in err and "cuda:7" in err and "not usable on this machine" in err
    assert not run_dir.exists()


def test_actors_no_node_can_hold_fail_at_once_naming_asked_and_available(ray_session, tmp_path):
    config = load_config("configs/smoke.yaml", [*SMOKE, "resources.cpus_per_actor=64"])
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"asks for 64 CPU.*no node.*largest offers 2 CPU"):
        train(config, str(tmp_path / "run"))
    assert time.monotonic() - started < 30
    assert not (tmp_path / "run").exists()


def test_actors_the_cluster_cannot_hold_together_fail_after_the_wait(ray_session, tmp_path):
    # each actor fits on the node, all three together do not: wait, then say what was asked and what is free
    config = load_config(
        "configs/smoke.yaml",
        [*SMOKE, "resources.num_actors=3", "resources.cpus_per_actor=1", "resources.envs_per_actor=16",
         "learner.batch_size=48", "resources.wait_for_resources_s=2"],
    )
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"needs 3 CPU.*after 2 s the Ray cluster has"):
        train(config, str(tmp_path / "run"))
    assert 2 <= time.monotonic() - started < 30
    assert not (tmp_path / "run").exists()
