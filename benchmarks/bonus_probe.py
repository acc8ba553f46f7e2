"""Does the pseudo-count bonus point where the agent should go? A probe of a trained bonus.

Loads the density model from a ``kind: pixelcnn`` run's checkpoint and plays the
checkpoint's env with fixed actions (one fixed action per policy: ``--actions 0,2`` is NOOP
against UP on the full action set). For every ``--every``-th frame of each policy it
measures, from the model's current state and without changing it:

* the frame's log-likelihood ``log ρ(x)`` (nats): how unfamiliar the model finds it;
* its prediction gain ``PG(x)`` and the bonus ``r⁺(x)`` that ``engram train`` would pay for
  it at the model's frame count (Ostrovski et al. 2017, with Bellemare et al. 2016's bonus);

and prints, per policy, their means and the rank correlation between unfamiliarity and
bonus over all frames. A bonus that can steer the agent pays more for the frames it finds
less familiar (a positive correlation) and more to the policy that reaches new states.

    python -m benchmarks.bonus_probe --checkpoint runs/freeway_pixelcnn/checkpoints/ckpt-….pt \\
        [--actions 0,2] [--steps 400] [--every 20] [--seed 7] [--pg first_order] [--json out.json]

Without a run to probe, ``--fresh FRAMES --config YAML [--set KEY=VALUE …]`` trains a new
density model with the config's ``exploration:`` settings on FRAMES frames of random play
(8 envs, each frame kept with probability ``exploration.frame_fraction``, as a learner
would see them) and probes that: a few minutes per setting instead of a training run.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from engram import build
from engram.checkpoint import load_checkpoint
from engram.checkpoint_payload import read_payload
from engram.config import Config, ConfigError, from_dict, load_config
from learners.exploration import PseudoCountBonus, exploration_bonus, pseudo_counts
from learners.intrinsic import IntrinsicRewards


def trained_bonus(payload: dict, checkpoint: str) -> tuple[Config, PseudoCountBonus]:
    """The checkpoint's config and its density model, as training left it."""
    config = from_dict(payload["config"])
    if config.exploration.kind != "pixelcnn" or "intrinsic_rewards" not in payload["learner"]:
        raise ConfigError(f"{checkpoint}: not a run with exploration.kind: pixelcnn (no density model to probe)")
    intrinsic = IntrinsicRewards(config.exploration.pseudo_count_config())
    intrinsic.load_state_dict(payload["learner"]["intrinsic_rewards"])
    return config, intrinsic.model


def fresh_bonus(config: Config, frames: int, *, seed: int, envs: int = 8) -> PseudoCountBonus:
    """A new density model trained, frame by frame in time order, on ``frames`` frames of
    uniformly random play, each env step's frames kept with probability ``frame_fraction``."""
    settings = config.exploration
    model = PseudoCountBonus(settings.pseudo_count_config())
    env = build.env_factory(config, seed=seed, num_envs=envs)()
    rng = np.random.default_rng(seed)
    try:
        env.reset(seed=seed)
        kept = []
        while model.frames_seen < frames:
            observation = env.step(rng.integers(env.single_action_space.n, size=envs))[0]
            keep = rng.random(envs) < settings.frame_fraction
            kept.extend(observation[keep][: frames - model.frames_seen - len(kept)])
            if len(kept) >= 256 or model.frames_seen + len(kept) >= frames:
                model.train_and_measure(model.preprocess(torch.as_tensor(np.stack(kept))))
                kept = []
    finally:
        env.close()
    return model


def fixed_action_frames(config: Config, action: int, *, steps: int, every: int, seed: int) -> torch.Tensor:
    """``[steps // every, C, H, W]`` uint8: every ``every``-th observation of one env repeating ``action``."""
    env = build.env_factory(config, seed=seed, num_envs=1)()
    try:
        env.reset(seed=seed)
        frames = []
        for step in range(1, steps + 1):
            observation = env.step(np.array([action]))[0]
            if step % every == 0:
                frames.append(observation[0].copy())
    finally:
        env.close()
    return torch.as_tensor(np.stack(frames))


def probe(model: PseudoCountBonus, frames: torch.Tensor, pg: str | None = None) -> dict[str, np.ndarray]:
    """Per frame: ``log_prob`` (nats), ``gain`` (PG, the run's way unless ``pg`` names the
    other) and ``bonus`` (r⁺ at the model's frame count)."""
    levels = model.preprocess(frames)
    with torch.no_grad():
        log_prob = model.model.log_prob(levels)
    gain = model.prediction_gains(levels, pg or model.config.pg)
    counts = pseudo_counts(gain.double(), torch.full_like(gain, float(model.frames_seen), dtype=torch.float64),
                           model.config.c)
    bonus = exploration_bonus(counts, model.config.beta)
    return {"log_prob": log_prob.numpy(), "gain": gain.numpy(), "bonus": bonus.numpy()}


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties)."""
    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for value in np.unique(x):
            tied = x == value
            r[tied] = r[tied].mean()
        return r
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a ckpt-*.pt of a kind: pixelcnn run")
    source.add_argument("--fresh", type=int, metavar="FRAMES",
                        help="train a new density model on this many frames of random play (needs --config)")
    parser.add_argument("--config", help="with --fresh: the config whose env and exploration settings to use")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="with --fresh: override a config value, as for engram train (repeatable)")
    parser.add_argument("--actions", default="0,2", help="comma-separated actions, one fixed-action policy each")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pg", choices=["exact", "first_order"], default=None,
                        help="measure the prediction gain this way (default: as the run did)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # batch-1 steps: more threads only wait on each other
    if args.checkpoint:
        config, model = trained_bonus(read_payload(load_checkpoint(args.checkpoint), args.checkpoint), args.checkpoint)
    else:
        if not args.config:
            parser.error("--fresh needs --config")
        config = load_config(args.config, args.set)
        if config.exploration.kind != "pixelcnn":
            raise ConfigError(f"{args.config}: exploration.kind is {config.exploration.kind!r}; --fresh needs pixelcnn")
        model = fresh_bonus(config, args.fresh, seed=args.seed)

    rows, everything = [], {"log_prob": [], "bonus": []}
    for action in (int(a) for a in args.actions.split(",")):
        frames = fixed_action_frames(config, action, steps=args.steps, every=args.every, seed=args.seed)
        measured = probe(model, frames, args.pg)
        for key in everything:
            everything[key].append(measured[key])
        rows.append({"action": action, "frames": len(measured["bonus"]),
                     **{f"{key}_mean": float(values.mean()) for key, values in measured.items()},
                     **{f"{key}_std": float(values.std()) for key, values in measured.items()}})
    correlation = rank_correlation(-np.concatenate(everything["log_prob"]), np.concatenate(everything["bonus"]))

    print(f"{config.env.atari.game if config.env.kind == 'atari' else config.env.kind}, density model after "
          f"{model.frames_seen:,} frames (pg measured: {args.pg or model.config.pg}; the run's: {model.config.pg})")
    print(f"{'action':>6} {'frames':>6} {'log ρ(x), nats':>18} {'PG':>20} {'bonus r⁺':>18}")
    for row in rows:
        print(f"{row['action']:>6} {row['frames']:>6} {row['log_prob_mean']:>10.1f} ± {row['log_prob_std']:<5.1f}"
              f" {row['gain_mean']:>10.3g} ± {row['gain_std']:<8.2g} {row['bonus_mean']:>9.4f} ± {row['bonus_std']:.4f}")
    print(f"rank correlation of unfamiliarity (−log ρ) with the bonus, all frames: {correlation:+.2f}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"benchmark": "bonus_probe", "checkpoint": args.checkpoint, "fresh": args.fresh,
                       "config": args.config, "overrides": args.set, "frames_seen": model.frames_seen,
                       "steps": args.steps, "every": args.every, "seed": args.seed,
                       "pg": args.pg or model.config.pg, "policies": rows,
                       "unfamiliarity_bonus_rank_correlation": correlation}, stream, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
