"""benchmarks.plan_probe: it reports a STRAW planner's activations, and sees a read-write runaway."""

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import plan_probe
from engram import build
from engram.config import load_config


def _probe(tmp_path, scale: float, *overrides: str) -> dict:
    config = load_config("configs/maze_straw_re.yaml", ["resources.envs_per_actor=4", "learner.unroll_length=20",
                                                         *overrides])
    make_agent = build.agent_factory(config, build.probe_env(config))
    torch.manual_seed(0)
    agent = make_agent()
    with torch.no_grad():  # a loop gain far above one: what a run that runs away has learned
        for name in ("intermediate", "patch_writer"):
            for parameter in getattr(agent.core, name).parameters():
                parameter.mul_(scale)
    path = tmp_path / f"ckpt-{int(scale)}.pt"
    torch.save({"learner": {"agent": agent.state_dict()}}, path)
    return plan_probe.probe_checkpoint(config, make_agent, path, unrolls=2, seed=0)


def test_the_probe_reads_a_planner_that_stays_bounded_and_one_that_runs_away(tmp_path):
    calm, runaway = _probe(tmp_path, 1.0), _probe(tmp_path, 30.0)
    assert calm["finite_logits"]
    assert set(calm["activations"]) == {f"{n}/{s}" for n in plan_probe.PLANNER_LAYERS for s in ("in", "out")}
    assert calm["activations"]["patch_writer/in"] < 10
    assert runaway["largest_weight"]["patch_writer"] > 20 * calm["largest_weight"]["patch_writer"]
    assert runaway["activations"]["patch_writer/in"] > 1e3 * calm["activations"]["patch_writer/in"]
    assert runaway["activations"]["encoder/out"] < 2 * calm["activations"]["encoder/out"]  # the input side stays calm


def test_the_probe_reads_a_planner_on_an_lstm_encoder(tmp_path):
    probe = _probe(tmp_path, 1.0, "agent.straw.encoder=lstm")
    assert probe["finite_logits"]
    assert 0 < probe["activations"]["encoder/out"] <= 1  # the LSTM's hidden state, not its cell
    assert "policy" in probe


def test_the_policy_summary_by_hand():
    from types import SimpleNamespace

    # T = 2 steps, B = 2 envs, 4 actions. Env 0: uniform logits, stays put then moves;
    # env 1: one logit 3 above the rest, starts an episode at t = 1 (excluded from the share).
    logits = np.zeros((2, 2, 4))
    logits[:, 1, 2] = 3.0
    frames = np.zeros((3, 2, 1, 2, 2), np.uint8)
    frames[2, 0, 0, 0, 0] = 255  # env 0 moves on its second step
    rollout = SimpleNamespace(
        behaviour_logits=logits, actions=np.array([[0, 2], [1, 2]]), observations=frames,
        firsts=np.array([[True, True], [False, True], [False, False]]), episode_returns=np.array([0.5, -1.0]),
    )
    summary = plan_probe.policy_summary([rollout])
    peaked = np.exp([0, 0, 3, 0]) / np.exp([0, 0, 3, 0]).sum()
    assert summary["entropy"] == pytest.approx((np.log(4) - (peaked * np.log(peaked)).sum()) / 2)
    assert summary["logit_spread"] == pytest.approx(1.5)
    assert summary["action_shares"] == [0.25, 0.25, 0.5, 0.0]
    assert summary["unchanged_observation_share"] == pytest.approx(2 / 3)  # env 0: same, moved; env 1 t=2: same
    assert summary["episodes"] == 2 and summary["mean_return"] == pytest.approx(-0.25)


def test_the_probe_reports_what_the_policy_did(tmp_path):
    calm = _probe(tmp_path, 1.0)
    policy = calm["policy"]
    assert 0 < policy["entropy"] <= np.log(4) + 1e-9
    assert sum(policy["action_shares"]) == pytest.approx(1.0)
    assert -8 <= policy["log_intensity_range"][0] <= policy["log_intensity_range"][1] <= 8


def test_checkpoints_are_chosen_by_the_step_in_their_name():
    assert plan_probe.checkpoint_step(Path("runs/x/checkpoints/ckpt-000002470400.pt")) == 2470400
