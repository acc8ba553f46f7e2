"""The memory-access picture: LRU ages by hand, and the figure from real SAM / SDNC rollouts."""

import numpy as np
import pytest

from engram import core_telemetry, memory_picture


def test_lru_ages_count_steps_since_the_last_access_above_the_threshold():
    rows = np.array([[3, 5], [3, 7], [5, 7], [9, 3]])
    weights = np.array([[0.9, 0.5], [0.001, 0.8], [0.4, 0.6], [1.0, 0.2]])  # row 3 at t=1 is below δ
    ages = memory_picture.lru_ages(rows, weights, np.array([3, 5, 7]))
    expected = np.array([
        [0, 0, np.nan],
        [1, 1, 0],
        [2, 0, 0],
        [0, 1, 1],
    ])
    np.testing.assert_array_equal(ages, expected)


def _rollout(core):
    from actors import wire
    from actors.rollout import PublishedWeights, RolloutWorker
    from engram import build
    from engram.config import load_config

    config = load_config("configs/smoke.yaml", [
        f"agent.core={core}", "agent.memory.memory_slots=32", "agent.memory.hidden_size=16",
        "agent.memory.word_size=8", "agent.memory.num_heads=2", "resources.envs_per_actor=2", "learner.batch_size=2",
    ])
    make_agent = build.agent_factory(config, build.probe_env(config))
    worker = RolloutWorker(0, build.env_factory(config, seed=0), make_agent, 12, seed=0)
    return wire.decode(worker.unroll(PublishedWeights(0, [make_agent().state_dict()])))


@pytest.mark.parametrize("core, panels", [("sam", 2), ("sdnc", 3)])
def test_a_memory_core_rollout_draws_the_access_picture(core, panels, monkeypatch):
    rollout = _rollout(core)
    assert {"read_rows", "read_weights", "write_rows", "write_weights"} <= set(rollout.telemetry)
    assert ("read_modes" in rollout.telemetry) == (core == "sdnc")
    if core == "sdnc":  # π over (backward, content, forward) sums to one per head
        np.testing.assert_allclose(rollout.telemetry["read_modes"].sum(-1), 1.0, rtol=1e-5)

    drawn_panels = []
    real_subplots = __import__("matplotlib.pyplot", fromlist=["subplots"]).subplots

    def counting_subplots(rows, *args, **kwargs):
        drawn_panels.append(rows)
        return real_subplots(rows, *args, **kwargs)

    monkeypatch.setattr("matplotlib.pyplot.subplots", counting_subplots)
    assert "memory/access" not in core_telemetry.summarise([rollout]).images  # only when pictures are asked for
    image = core_telemetry.summarise([rollout], pictures=True).images["memory/access"]
    assert drawn_panels == [panels]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 330 <= image.shape[1] <= 600  # TensorBoard shows images ~330 px wide: little shrinking, so the text stays legible
    assert image.std() > 10  # something was drawn


def test_an_lstm_rollout_has_no_access_picture():
    rollout = _rollout("lstm")
    assert "memory/access" not in core_telemetry.summarise([rollout], pictures=True).images


def test_a_long_caption_is_wrapped_inside_the_picture():
    rollout = _rollout("sam")
    caption = "memory access: popgym RepeatPreviousEasy, agent step 20,480: env 0 of actor 0, policy v12345"
    image = memory_picture.draw(rollout.telemetry, env=0, title=caption).astype(int)
    title_band = image[: image.shape[0] // 10]
    assert (title_band < 128).any()  # the caption is drawn there
    edges = np.concatenate([title_band[:, :3], title_band[:, -3:]], axis=1)
    assert edges.min() > 200  # and no text runs off either side
