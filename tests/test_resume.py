"""`--resume` compares the new config with the checkpoint's before it writes anything."""


import pytest
import torch

from engram import build
from engram.checkpoint import Checkpointer
from engram.checkpoint_payload import rl_payload
from engram.config import ConfigError, dump_config, load_config
from engram.resume import check_resume, config_changes
from engram.train import train
from learners.learner import Learner

BASE = ["telemetry.console=false", "run.total_steps=4000"]


def _payload(config, env_steps=1000):
    agent = build.agent_factory(config, build.probe_env(config))()
    learner = Learner(agent, build.learner_settings(config))
    return rl_payload(config, learner.state_dict(), {"env_steps": env_steps})


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with the smoke config's config.yaml and one checkpoint at 1,000 steps."""
    config = load_config("configs/smoke.yaml", BASE)
    (tmp_path / "config.yaml").write_text(dump_config(config))
    Checkpointer(tmp_path / "checkpoints").save(_payload(config), 1000)
    return tmp_path


def test_a_changed_model_is_refused_listing_every_change_and_nothing_is_written(run_dir):
    before = (run_dir / "config.yaml").read_text()
    config = load_config("configs/smoke.yaml", [*BASE, "agent.lstm.hidden_size=128", "learner.discount=0.5"])
    with pytest.raises(ConfigError) as error:
        train(config, str(run_dir), resume=True)
    message = str(error.value)
    assert "agent.lstm.hidden_size: 64 in the checkpoint, 128 now" in message
    assert "learner.discount: 0.9 in the checkpoint, 0.5 now" in message
    assert (run_dir / "config.yaml").read_text() == before
    assert not (run_dir / "metrics.jsonl").exists()


def test_settings_that_may_change_are_reported_and_others_are_not():
    saved = load_config("configs/smoke.yaml", BASE)
    new = load_config("configs/smoke.yaml", [*BASE, "learner.learning_rate=0.0003", "run.total_steps=9000",
                                             "resources.num_actors=1", "learner.bptt.measure_every=7",
                                             "learner.learning_rate_schedule=linear"])
    changes = check_resume(_payload(saved), new, "ckpt")
    assert changes == {
        "learner.bptt.measure_every": (100, 7),
        "learner.learning_rate": (0.001, 0.0003),
        "learner.learning_rate_schedule": ("constant", "linear"),
        "resources.num_actors": (2, 1),
        "run.total_steps": (4000, 9000),
    }
    assert config_changes(saved, saved) == {}


def test_an_already_reached_total_steps_is_refused():
    saved = load_config("configs/smoke.yaml", BASE)
    with pytest.raises(ConfigError, match=r"run.total_steps \(1,000\) is already reached.*at 1,000 steps"):
        check_resume(_payload(saved, env_steps=1000), load_config("configs/smoke.yaml", [*BASE, "run.total_steps=1000"]), "ckpt")


def test_a_changed_maze_option_is_refused():
    saved = load_config("configs/maze_lstm.yaml", ["env.maze.options={size: 5}"])
    new = load_config("configs/maze_lstm.yaml", ["env.maze.options={size: 7}"])
    with pytest.raises(ConfigError, match=r"env.maze.options: \{'size': 5\} in the checkpoint, \{'size': 7\} now"):
        check_resume({"config": saved.model_dump(mode="json"), "progress": {}}, new, "ckpt")


def test_the_new_learning_rate_replaces_the_one_in_the_restored_optimiser():
    old = load_config("configs/smoke.yaml", BASE)
    new = load_config("configs/smoke.yaml", [*BASE, "learner.learning_rate=0.0003"])
    spec = build.probe_env(old)
    saved = Learner(build.agent_factory(old, spec)(), build.learner_settings(old)).state_dict()
    resumed = Learner(build.agent_factory(new, spec)(), build.learner_settings(new))
    resumed.load_state_dict(saved)
    assert [group["lr"] for group in resumed.optimizer.param_groups] == [0.0003]
