"""End-to-end runs on one shared local Ray (tens of seconds each)."""

import json

import numpy as np
import pytest
import torch

from actors import wire
from actors.rollout import RolloutWorker
from engram import build
from engram.checkpoint import Checkpointer
from engram.config import load_config
from engram.train import train
from learners.driver import Driver

pytestmark = pytest.mark.e2e

STABLE_SCALARS = {
    "episode/return_mean100",
    "episode/length_mean100",
    "frames/episode_return_mean100",
    "throughput/env_frames_per_s",
    "throughput/env_steps_per_s",
    "throughput/learner_updates_per_s",
    "learner/policy_lag",
    "loss/policy",
    "loss/value",
    "loss/entropy",
    "learner/grad_norm",
    "learner/learning_rate",
    "runtime/actor_restarts",
    "runtime/rejected_rollouts",
}


def _event_scalar_names(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def test_smoke_config_trains_end_to_end(ray_session, tmp_path):
    """The whole pipeline on configs/smoke.yaml: actors, learner, checkpoints, TensorBoard, metrics.

    How well it learns MemoryCue is a benchmark, not a test (benchmarks/RESULTS.md, "The smoke
    config learns MemoryCue": ``engram bench learning --config configs/smoke.yaml``).
    """
    config = load_config("configs/smoke.yaml", ["telemetry.console=false"])
    run_dir = train(config, str(tmp_path / "smoke"))
    payload, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    recent = payload["progress"]["recent_returns"]
    assert len(recent) == 100 and np.isfinite(recent).all()
    assert payload["progress"]["env_steps"] >= config.run.total_steps
    assert payload["learner"]["updates"] > 0
    assert (run_dir / "config.yaml").is_file()
    assert STABLE_SCALARS <= _event_scalar_names(run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records and all("step" in r for r in records)
    losses = [r["loss/total"] for r in records if "loss/total" in r]
    assert losses and np.isfinite(losses).all()


def test_resume_continues_counters_and_optimizer(ray_session, tmp_path):
    run_dir = tmp_path / "resume"
    first = load_config("configs/smoke.yaml", ["run.total_steps=3000", "telemetry.console=false"])
    train(first, str(run_dir))
    saved, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    saved_steps, saved_updates = saved["progress"]["env_steps"], saved["learner"]["updates"]

    second = load_config("configs/smoke.yaml", [f"run.total_steps={saved_steps + 3000}", "telemetry.console=false"])
    train(second, str(run_dir), resume=True)
    resumed, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    new_updates = resumed["learner"]["updates"] - saved_updates
    assert resumed["progress"]["env_steps"] >= saved_steps + 3000
    assert 0 < new_updates < resumed["learner"]["updates"]
    # RMSProp counts its steps per parameter: a fresh optimizer would count only the new ones.
    steps = {float(s["step"]) for s in resumed["learner"]["optimizer"]["state"].values()}
    assert steps == {float(resumed["learner"]["updates"])}


def test_existing_run_folder_needs_resume(ray_session, tmp_path):
    from engram.config import ConfigError

    config = load_config("configs/smoke.yaml", ["run.total_steps=500", "telemetry.console=false"])
    train(config, str(tmp_path / "r"))
    before = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match="--resume"):
        train(config, str(tmp_path / "r"))
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == before


def _driver(config, **kwargs):
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    settings = build.driver_settings(config)
    return Driver(settings, build.endpoint(config, make_agent, spec), build.env_factory(config, 0), make_agent, **kwargs)


def test_a_killed_actor_is_replaced_and_training_continues(ray_session):
    import ray

    config = load_config("configs/smoke.yaml", ["run.total_steps=12000"])
    killed = []

    def kill_once(progress, metrics, rollouts):
        if not killed and progress.env_steps >= 2000:
            ray.kill(driver.actor_handle(0))
            killed.append(progress.env_steps)

    driver = _driver(config, on_update=kill_once)
    progress = driver.run()
    assert killed and progress.actor_restarts >= 1
    assert progress.env_steps >= 12000


class CorruptingWorker(RolloutWorker):
    """Truncates every third rollout, as a broken network or actor would."""

    calls = 0

    def unroll(self, weights=None):
        payload = super().unroll(weights)
        self.calls += 1
        return payload[: len(payload) // 2] if self.calls % 3 == 0 else payload


def test_rejected_rollouts_are_counted_and_training_goes_on(ray_session):
    import sys

    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    config = load_config("configs/smoke.yaml", ["run.total_steps=6000"])
    progress = _driver(config, worker_class=CorruptingWorker).run()
    assert progress.rejected_rollouts >= 2
    assert progress.env_steps >= 6000


class ImpossibleWorker(RolloutWorker):
    """Every third rollout decodes but cannot be trained on: an action out of range, a NaN reward."""

    calls = 0

    def unroll(self, weights=None):
        rollout = wire.decode(super().unroll(weights))
        self.calls += 1
        if self.calls % 3 == 0:
            rollout.actions = np.full_like(rollout.actions, 99)
        if self.calls % 3 == 1 and self.calls > 1:
            rollout.rewards = np.full_like(rollout.rewards, np.nan)
        return wire.encode(rollout)


def test_impossible_rollouts_are_dropped_one_by_one_and_training_goes_on(ray_session):
    import sys

    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    config = load_config("configs/smoke.yaml", ["run.total_steps=6000"])
    progress = _driver(config, worker_class=ImpossibleWorker).run()
    assert progress.rejected_rollouts >= 4
    assert progress.env_steps >= 6000


def test_learner_as_a_ray_actor_trains_and_checkpoints(ray_session, tmp_path):
    """resources.learner_placement=actor is what a GPU learner uses; here on the CPU."""
    config = load_config(
        "configs/smoke.yaml",
        ["run.total_steps=3000", "telemetry.console=false", "resources.learner_placement=actor",
         "resources.num_actors=1"],
    )
    run_dir = train(config, str(tmp_path / "remote"))
    payload, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    assert payload["progress"]["env_steps"] >= 3000
    assert payload["learner"]["updates"] > 0


def test_a_diverging_run_stops_with_the_cause_and_keeps_good_weights(ray_session, tmp_path):
    from learners.errors import DivergenceError

    run_dir = tmp_path / "diverge"
    config = load_config(
        "configs/smoke.yaml",
        ["run.total_steps=100000", "telemetry.console=false", "learner.learning_rate=1e30",
         "learner.max_consecutive_skips=5"],
    )
    with pytest.raises(DivergenceError, match="learning_rate"):
        train(config, str(run_dir))
    for path in (run_dir / "checkpoints").glob("ckpt-*.pt"):
        payload = torch.load(path, weights_only=True)
        assert all(torch.isfinite(v).all() for v in payload["learner"]["agent"].values() if v.is_floating_point())


@pytest.mark.parametrize("niceness", [0, 7])
def test_a_local_ray_runs_the_actors_at_the_configured_niceness(niceness):
    import subprocess
    import sys

    probe = (
        "import os, ray; from engram.train import _init_ray; "
        f"assert _init_ray(None, worker_niceness={niceness}); "
        "Probe = ray.remote(num_cpus=0)(type('Probe', (), {'nice': lambda self: os.getpriority(os.PRIO_PROCESS, 0)})); "
        "print('NICE', ray.get(Probe.remote().nice.remote())); ray.shutdown()"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"NICE {niceness}" in result.stdout.splitlines()


def test_train_without_address_starts_its_own_ray_even_when_another_is_advertised(tmp_path):
    import os
    import subprocess
    import sys

    probe = (
        "import ray; from engram.train import _init_ray; assert _init_ray(None); "
        "print('GCS', ray.get_runtime_context().gcs_address); ray.shutdown()"
    )
    # RAY_ADDRESS is how a running cluster advertises itself to a plain ray.init(); nothing listens there.
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    address = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("GCS"))
    assert not address.endswith(":9")


def test_a_remote_learner_logs_the_exploration_pictures_a_local_one_does(ray_session, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config("configs/pong_lstm.yaml", [
        "run.total_steps=30", "telemetry.console=false", "telemetry.log_interval_s=0.01",
        "resources.learner_placement=actor", "resources.num_actors=1", "resources.envs_per_actor=2",
        "learner.batch_size=2", "learner.unroll_length=5", "agent.lstm.hidden_size=16", "agent.torso_size=16",
        "exploration.kind=pixelcnn", "exploration.hidden_channels=4", "exploration.layers=1",
        "exploration.sample_interval_s=0.01",
    ])
    run_dir = train(config, str(tmp_path / "remote_bonus"))
    events = EventAccumulator(str(run_dir), size_guidance={"histograms": 0, "images": 0})
    events.Reload()
    assert "exploration/pseudo_counts" in events.Tags()["histograms"]
    assert "exploration/density_model_samples" in events.Tags()["images"]


def _large_arrays_in(value, found: list) -> list:
    """Rollout bytes, tensors and arrays of any size held anywhere inside ``value``."""
    if isinstance(value, (bytes, bytearray)) and len(value) > 1024:
        found.append(f"{len(value)} bytes")
    elif isinstance(value, torch.Tensor) or (isinstance(value, np.ndarray) and value.size > 256):
        found.append(type(value).__name__)
    elif isinstance(value, dict):
        for item in value.values():
            _large_arrays_in(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _large_arrays_in(item, found)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _large_arrays_in(getattr(value, name), found)
    return found


def test_with_a_learner_actor_no_rollout_or_weights_pass_through_the_driver(ray_session, monkeypatch):
    """Issue 22's data path: rollouts go from the actors' object stores to the learner actor,
    weights from the learner actor to the actors; the driver handles references only."""
    import ray

    config = load_config("configs/smoke.yaml", ["run.total_steps=4000", "resources.learner_placement=actor"])
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    learner = build.placed_learner(config, make_agent, spec)
    fetched, put = [], []
    real_get, real_put = ray.get, ray.put

    def recording_get(refs, *args, **kwargs):
        values = real_get(refs, *args, **kwargs)
        fetched.extend(_large_arrays_in(values, []))
        return values

    def recording_put(value, *args, **kwargs):
        put.append(type(value).__name__)
        return real_put(value, *args, **kwargs)

    monkeypatch.setattr(ray, "get", recording_get)
    monkeypatch.setattr(ray, "put", recording_put)
    try:
        driver = Driver(build.driver_settings(config), learner, build.env_factory(config, 0), make_agent)
        progress = driver.run()
    finally:
        monkeypatch.undo()
        learner.close()
    assert progress.env_steps >= 4000 and learner.updates > 0
    assert fetched == [] and put == []


def test_a_lost_learner_actor_stops_the_run_with_the_cause_and_resume_continues_it(ray_session, tmp_path, monkeypatch):
    import ray

    from engram import train as train_module
    from learners.errors import LearnerLost

    run_dir = tmp_path / "lost"
    config = load_config("configs/smoke.yaml", [
        "run.total_steps=100000", "telemetry.console=false", "resources.learner_placement=actor",
        "checkpoint.interval_s=0.5",
    ])
    real_call = train_module._TrainingHooks.__call__

    def kill_the_learner_after_a_checkpoint(hooks, progress, metrics, recent):
        real_call(hooks, progress, metrics, recent)
        if list((run_dir / "checkpoints").glob("ckpt-*.pt")):
            ray.kill(hooks.learner._replicas[0])

    monkeypatch.setattr(train_module._TrainingHooks, "__call__", kill_the_learner_after_a_checkpoint)
    with pytest.raises(LearnerLost, match="--resume"):
        train(config, str(run_dir))
    monkeypatch.undo()
    saved, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    again = load_config("configs/smoke.yaml", [
        f"run.total_steps={saved['progress']['env_steps'] + 2000}", "telemetry.console=false",
        "resources.learner_placement=actor",
    ])
    train(again, str(run_dir), resume=True)
    resumed, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    assert resumed["progress"]["env_steps"] >= saved["progress"]["env_steps"] + 2000
    assert resumed["learner"]["updates"] > saved["learner"]["updates"]


def test_two_data_parallel_learners_train_stay_identical_checkpoint_and_resume(ray_session, tmp_path):
    """resources.num_learners=2: two learner actors, each on half of every batch (whole
    rollouts), gradients summed over gloo; tests/test_data_parallel.py checks the weights
    against one learner's."""
    settings = ["telemetry.console=false", "resources.num_learners=2", "resources.learner_cpus=0.5",
                "resources.num_actors=1"]
    config = load_config("configs/smoke.yaml", ["run.total_steps=3000", *settings])
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    learner = build.placed_learner(config, make_agent, spec)
    try:
        progress = Driver(build.driver_settings(config), learner, build.env_factory(config, 0), make_agent).run()
        first, second = learner.replica_states()
    finally:
        learner.close()
    assert progress.env_steps >= 3000 and first["updates"] == second["updates"] > 0
    for key, value in first["agent"].items():
        assert torch.equal(value, second["agent"][key]), key

    run_dir = tmp_path / "replicas"
    train(config, str(run_dir))
    saved, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    more = load_config("configs/smoke.yaml", [f"run.total_steps={saved['progress']['env_steps'] + 2000}", *settings])
    train(more, str(run_dir), resume=True)
    resumed, _ = Checkpointer(run_dir / "checkpoints").load_latest()
    assert resumed["progress"]["env_steps"] >= saved["progress"]["env_steps"] + 2000
    assert resumed["learner"]["updates"] > saved["learner"]["updates"]


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_run_with_a_checkpoint(tmp_path, name):
    """`docker stop` and `ray job stop` send SIGTERM, Ctrl-C SIGINT: either lets the update in
    flight finish and writes a checkpoint that --resume continues from."""
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "engram.cli", "train", "configs/smoke.yaml", "--run-dir", str(run_dir),
        "--set", "run.total_steps=100000000", "--set", "checkpoint.interval_s=100000",
    ]
    log_path = tmp_path / "train.log"  # a file, not a pipe: nobody reads while the run waits
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run logged no metrics within 180 s"
            time.sleep(0.5)
        assert not list((run_dir / "checkpoints").glob("ckpt-*.pt"))  # only the stop can write one
        process.send_signal(getattr(signal, name))
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    checkpoints = list((run_dir / "checkpoints").glob("ckpt-*.pt"))
    assert len(checkpoints) == 1, output[-3000:]
    assert int(checkpoints[0].stem.split("-")[1]) > 0
