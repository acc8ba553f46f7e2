"""`engram bench scale` on the tiny smoke config: what it counts, not how fast it runs."""

import json

import pytest

from benchmarks import scale
from engram import build
from engram.config import load_config


@pytest.mark.e2e
def test_bench_scale_counts_the_rollout_the_batch_and_the_weights(ray_session, tmp_path):
    out = tmp_path / "scale.json"
    assert scale.main(["--config", "configs/smoke.yaml", "--quick", "--max-actors", "1", "--learners", "1,2",
                       "--json", str(out)]) == 0
    results = json.loads(out.read_text())

    config = load_config("configs/smoke.yaml")
    T, envs = config.learner.unroll_length, config.resources.envs_per_actor
    assert results["wire"]["agent_steps_per_rollout"] == T * envs
    observation_bytes = (T + 1) * envs * build.probe_env(config).observation_shape[0] * 4  # float32 vectors
    assert results["wire"]["rollout_bytes"] > observation_bytes
    (learner,) = results["learner"]
    assert learner["core"] == "lstm" and learner["batch_envs"] == config.learner.batch_size
    assert learner["agent_steps_per_update"] == T * config.learner.batch_size
    spec = build.probe_env(config)
    weights = build.agent_factory(config, spec)().state_dict()
    assert {row["weight_bytes"] for row in results["broadcast"]} == {sum(t.numel() * t.element_size() for t in weights.values())}
    assert [(row["learners"], row["actors"]) for row in results["end_to_end"]] == [(1, 1), (2, 1)]
    assert all(row["steps_per_s"] > 0 for row in results["end_to_end"])
    assert results["absorbable_actors"] == pytest.approx(
        learner["agent_steps_per_s"] / results["end_to_end"][0]["steps_per_s"]
    )
