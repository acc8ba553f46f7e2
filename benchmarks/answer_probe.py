"""Which answers a POPGym card agent gets right, by their step in the episode.

POPGym's card tasks (Autoencode, Repeat Previous, Repeat First) pay +1/n for a right answer
and −1/n for a wrong one on each scored step, and nothing on the others. This plays a run's
checkpoint on fresh episodes and prints, for each scored step, the share of episodes that
answered right. In Autoencode with n cards, the answer at step t names the card shown at
step 2(n − 1) − t, so the k-th answer looks back 2k steps: the table shows how far back the
agent's memory reaches. Its runs must unroll whole episodes (``learner.unroll_length`` equal
to the episode's length), so that every unroll starts at a reset.

    python -m benchmarks.answer_probe --run runs/popgym_sam_autoencode [--checkpoint <run>/checkpoints/ckpt-….pt]
        [--unrolls 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from actors import wire
from actors.rollout import PublishedWeights, RolloutWorker
from engram import build
from engram.checkpoint import CheckpointError, load_checkpoint, newest_in
from engram.config import load_config


def share_right_by_step(rewards: np.ndarray) -> tuple[list[int], list[float]]:
    """The scored steps of ``rewards`` ``[T, B]`` (those with a nonzero reward in most
    episodes) and, for each, the share of episodes paid a positive reward there."""
    scored = (rewards != 0).mean(axis=1) > 0.5
    steps = [int(t) for t in np.flatnonzero(scored)]
    return steps, [float((rewards[t] > 0).mean()) for t in steps]


def play(run: Path, checkpoint: Path | None, *, unrolls: int, seed: int) -> np.ndarray:
    """Rewards ``[T, unrolls · B]`` of whole episodes played by the checkpoint's agent."""
    config = load_config(run / "config.yaml")
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    path = checkpoint or newest_in(run)
    agent = make_agent()
    agent.load_state_dict(load_checkpoint(path)["learner"]["agent"])
    worker = RolloutWorker(0, build.env_factory(config, seed), lambda: agent, config.learner.unroll_length, seed)
    weights = PublishedWeights(0, [agent.state_dict()])
    rewards = []
    for _ in range(unrolls):
        rollout = wire.decode(worker.unroll(weights))
        if not np.asarray(rollout.firsts)[0].all():
            raise SystemExit(f"{run}: an unroll began mid-episode; set learner.unroll_length "
                             f"({config.learner.unroll_length}) to the episode's length")
        rewards.append(np.asarray(rollout.rewards))
    print(f"{run.name}, {Path(path).name}: {unrolls} unrolls of {rewards[0].shape[1]} episodes")
    return np.concatenate(rewards, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint file (default: the run's newest)")
    parser.add_argument("--unrolls", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        rewards = play(args.run, args.checkpoint, unrolls=args.unrolls, seed=args.seed)
    except CheckpointError as error:
        raise SystemExit(str(error)) from None
    steps, share = share_right_by_step(rewards)
    for first in range(0, len(steps), 8):
        row = share[first:first + 8]
        print(f"answers {first:3d}–{first + len(row) - 1:3d} (steps {steps[first]}–{steps[first + len(row) - 1]}): "
              + " ".join(f"{s:.2f}" for s in row))
    print(f"share right over all {len(steps)} scored steps: {np.mean(share):.3f}")
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "checkpoint": str(args.checkpoint or "newest"),
                                         "steps": steps, "share_right": share}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
