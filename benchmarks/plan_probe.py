"""How large a STRAW planner's activations grow while it plays: the check for a read-write runaway.

STRAW writes into its plan every step it re-plans (``A_t = ρ(A_{t−1}) + g_t · write``) and reads
the plan back to decide the next write, so a loop with a gain above one grows from step to
step within an episode even while the weights stay small. This plays each of a run's newest
checkpoints on its own env for a few unrolls and prints, per planner layer, the largest
absolute input and output seen, beside the largest weight of each layer.

It also says what the policy does in that play, the check for a collapse that is not a
runaway: the policy's entropy and the spread of its logits, the share of each action, the
share of steps whose observation did not change (an agent walking into a wall), the
episodes finished and their mean return, and the range of the write intensity log γ.

    python -m benchmarks.plan_probe --run runs/maze_straw_re [--last 3 | --steps 2.3e6,2.6e6]
        [--unrolls 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from actors import wire
from actors.rollout import NonFiniteLogitsError, PublishedWeights, RolloutWorker
from agents.core_names import STRAW_VARIANTS
from agents.straw_attention import LOG_CLAMP
from engram import build
from engram.checkpoint import load_checkpoint, step_of as checkpoint_step  # plan_probe's name for it
from engram.config import load_config

PLANNER_LAYERS = ("encoder", "action_attention", "patch_writer", "commitment_attention")


def probe_checkpoint(config, make_agent, path: Path, *, unrolls: int, seed: int) -> dict:
    """Largest |input| and |output| of each planner layer over ``unrolls`` unrolls of play."""
    agent = make_agent()
    agent.load_state_dict(load_checkpoint(path)["learner"]["agent"])
    peaks: dict[str, float] = {}

    def track(name):
        def hook(module, inputs, output):
            if isinstance(output, tuple):  # an LSTM encoder's (hidden, cell): z_t is the hidden
                output = output[0]
            peaks[f"{name}/in"] = max(peaks.get(f"{name}/in", 0.0), float(inputs[0].detach().abs().max()))
            peaks[f"{name}/out"] = max(peaks.get(f"{name}/out", 0.0), float(output.detach().abs().max()))
        return hook

    for name in PLANNER_LAYERS:
        getattr(agent.core, name).register_forward_hook(track(name))
    log_intensities = []
    agent.core.action_attention.register_forward_hook(
        lambda module, inputs, output: log_intensities.append(output[:, 3].detach().clamp(-LOG_CLAMP, LOG_CLAMP))
    )
    worker = RolloutWorker(0, build.env_factory(config, seed), lambda: agent, config.learner.unroll_length, seed)
    weights = PublishedWeights(0, [agent.state_dict()])
    finite_logits, rollouts = True, []
    for _ in range(unrolls):
        try:
            rollout = wire.decode(worker.unroll(weights))
        except NonFiniteLogitsError:  # the actor refuses to act on them: the runaway reached the policy
            finite_logits = False
            break
        finite_logits &= bool(np.isfinite(np.asarray(rollout.behaviour_logits)).all())
        rollouts.append(rollout)
    largest_weight = {name: float(max(p.detach().abs().max() for p in getattr(agent.core, name).parameters()))
                      for name in PLANNER_LAYERS}
    result = {"checkpoint": path.name, "finite_logits": finite_logits, "activations": peaks,
              "largest_weight": largest_weight}
    if finite_logits and rollouts:
        intensity = np.concatenate([x.numpy() for x in log_intensities])
        result["policy"] = {**policy_summary(rollouts), "log_intensity_range": [float(intensity.min()), float(intensity.max())]}
    return result


def policy_summary(rollouts: list) -> dict:
    """What the policy did over ``rollouts``: mean entropy (nats) and max−min logit spread per
    step, each action's share, the share of steps after which the observation was unchanged
    (episode starts excluded), and the episodes finished with their mean return."""
    logits = np.concatenate([np.asarray(r.behaviour_logits, np.float64) for r in rollouts])  # [N·T, B, A]
    shifted = logits - logits.max(-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    entropy = -(probabilities * np.log(np.clip(probabilities, 1e-300, None))).sum(-1)
    actions = np.concatenate([r.actions.ravel() for r in rollouts])
    unchanged = []
    for r in rollouts:
        frames = r.observations.reshape(r.observations.shape[0], r.observations.shape[1], -1)
        same = (frames[1:] == frames[:-1]).all(-1) & ~r.firsts[1:]
        unchanged.append(same[~r.firsts[1:]])
    returns = np.concatenate([r.episode_returns for r in rollouts])
    return {
        "entropy": float(entropy.mean()),
        "logit_spread": float((logits.max(-1) - logits.min(-1)).mean()),
        "action_shares": (np.bincount(actions, minlength=logits.shape[-1]) / actions.size).tolist(),
        "unchanged_observation_share": float(np.concatenate(unchanged).mean()),
        "episodes": int(returns.size),
        "mean_return": float(returns.mean()) if returns.size else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a STRAW run folder (config.yaml, checkpoints/)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, default=3, help="how many of the newest checkpoints to play")
    which.add_argument("--steps", default=None,
                       help="FROM,TO: every checkpoint written between these steps (e.g. 2.3e6,2.6e6)")
    parser.add_argument("--unrolls", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    run = Path(args.run)
    checkpoints = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    if args.steps:
        low, high = (float(x) for x in args.steps.split(","))
        checkpoints = [c for c in checkpoints if low <= checkpoint_step(c) <= high]
    else:
        checkpoints = checkpoints[-args.last:]
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
        if "policy" in result:
            policy = result["policy"]
            mean_return = "–" if policy["mean_return"] is None else f"{policy['mean_return']:.2f}"
            print(f"  policy: entropy {policy['entropy']:.2f}, logit spread {policy['logit_spread']:.2f}, action shares "
                  f"{' '.join(f'{x:.2f}' for x in policy['action_shares'])}, observation unchanged after "
                  f"{policy['unchanged_observation_share']:.2f} of steps, {policy['episodes']} episodes at "
                  f"{mean_return}, log γ in [{policy['log_intensity_range'][0]:.2f}, {policy['log_intensity_range'][1]:.2f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(run), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
