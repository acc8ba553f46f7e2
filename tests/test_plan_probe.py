"""benchmarks.plan_probe: it reports a STRAW planner's activations, and sees a read-write runaway."""

import torch

from benchmarks import plan_probe
from engram import build
from engram.config import load_config


def _probe(tmp_path, scale: float) -> dict:
    config = load_config("configs/maze_straw_re.yaml", ["resources.envs_per_actor=4", "learner.unroll_length=20"])
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
