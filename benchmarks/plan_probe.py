"""How large a STRAW planner's activations grow while it plays: the check for a read-write runaway.

STRAW writes into its plan every step it re-plans (``A_t = ρ(A_{t−1}) + g_t · write``) and reads
the plan back to decide the next write, so a loop with a gain above one grows from step to
step within an episode even while the weights stay small. This plays each of a run's newest
checkpoints on its own env for a few unrolls and prints, per planner layer, the largest
absolute input and output seen, beside the largest weight of each layer.

    python -m benchmarks.plan_probe --run runs/maze_straw_re [--last 3] [--unrolls 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from actors import wire
from actors.rollout import NonFiniteLogitsError, PublishedWeights, RolloutWorker
from agents.core_names import STRAW_VARIANTS
from engram import build
from engram.checkpoint import load_checkpoint
from engram.config import load_config

PLANNER_LAYERS = ("encoder", "action_attention", "patch_writer", "commitment_attention")


def probe_checkpoint(config, make_agent, path: Path, *, unrolls: int, seed: int) -> dict:
    """Largest |input| and |output| of each planner layer over ``unrolls`` unrolls of play."""
    agent = make_agent()
    agent.load_state_dict(load_checkpoint(path)["learner"]["agent"])
    peaks: dict[str, float] = {}

    def track(name):
        def hook(module, inputs, output):
            peaks[f"{name}/in"] = max(peaks.get(f"{name}/in", 0.0), float(inputs[0].detach().abs().max()))
            peaks[f"{name}/out"] = max(peaks.get(f"{name}/out", 0.0), float(output.detach().abs().max()))
        return hook

    for name in PLANNER_LAYERS:
        getattr(agent.core, name).register_forward_hook(track(name))
    worker = RolloutWorker(0, build.env_factory(config, seed), lambda: agent, config.learner.unroll_length, seed)
    weights = PublishedWeights(0, [agent.state_dict()])
    finite_logits = True
    for _ in range(unrolls):
        try:
            rollout = wire.decode(worker.unroll(weights))
        except NonFiniteLogitsError:  # the actor refuses to act on them: the runaway reached the policy
            finite_logits = False
            break
        finite_logits &= bool(np.isfinite(np.asarray(rollout.behaviour_logits)).all())
    largest_weight = {name: float(max(p.detach().abs().max() for p in getattr(agent.core, name).parameters()))
                      for name in PLANNER_LAYERS}
    return {"checkpoint": path.name, "finite_logits": finite_logits, "activations": peaks,
            "largest_weight": largest_weight}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a STRAW run folder (config.yaml, checkpoints/)")
    parser.add_argument("--last", type=int, default=3, help="how many of the newest checkpoints to play")
    parser.add_argument("--unrolls", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    run = Path(args.run)
    checkpoints = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-args.last:]
    if not checkpoints:
        raise SystemExit(f"no checkpoint in {run / 'checkpoints'}")
    config = load_config(run / "config.yaml")
    if config.agent.core not in STRAW_VARIANTS:
        raise SystemExit(f"{run} trains agent.core={config.agent.core!r}; the probe reads a STRAW planner")
    make_agent = build.agent_factory(config, build.probe_env(config))
    results = [probe_checkpoint(config, make_agent, path, unrolls=args.unrolls, seed=args.seed) for path in checkpoints]
    for result in results:
        peaks = result["activations"]
        print(f"{result['checkpoint']}: logits finite {result['finite_logits']}")
        for name in PLANNER_LAYERS:
            print(f"  {name:22s} |in| ≤ {peaks[f'{name}/in']:10.3g}   |out| ≤ {peaks[f'{name}/out']:10.3g}"
                  f"   |w| ≤ {result['largest_weight'][name]:.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(run), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
