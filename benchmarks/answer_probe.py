"""Which answers a POPGym card agent gets right, by their step in the episode.

POPGym's card tasks (Autoencode, Repeat Previous, Repeat First) pay +1/n for a right answer
and −1/n for a wrong one on each scored step, and nothing on the others. This plays a run's
checkpoint on fresh episodes and prints, for each scored step, the share of episodes that
answered right. In Autoencode with n cards, the answer at step t names the card shown at
step 2(n − 1) − t, so the k-th answer looks back 2k steps: the table shows how far back the
agent's memory reaches. Its runs must unroll whole episodes (``learner.unroll_length`` equal
to the episode's length), so that every unroll starts at a reset.

For an SDNC core it also gives each read head's mean read mode on the scored steps (backward
along the temporal links, content, forward; Rae et al. 2016, Supp. F), and ``--picture``
saves the memory-access picture of one episode (what TensorBoard's ``memory/access`` shows).

    python -m benchmarks.answer_probe --run runs/popgym_sam_autoencode [--checkpoint <run>/checkpoints/ckpt-….pt]
        [--unrolls 4] [--json out.json] [--picture access.png]
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


def mean_read_modes(modes: np.ndarray, steps: list[int]) -> np.ndarray:
    """``[H, 3]``: each head's read-mode shares π = (backward, content, forward) averaged over
    the scored ``steps`` and the episodes of ``modes`` ``[T, B, H, 3]``."""
    return modes[steps].mean(axis=(0, 1))


def play(run: Path, checkpoint: Path | None, *, unrolls: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    """Rewards ``[T, unrolls · B]`` of whole episodes played by the checkpoint's agent, and each
    unroll's core telemetry (``[T + 1, B, ...]`` per name; step t's is at index t)."""
    config = load_config(run / "config.yaml")
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    path = checkpoint or newest_in(run)
    agent = make_agent()
    agent.load_state_dict(load_checkpoint(path)["learner"]["agent"])
    worker = RolloutWorker(0, build.env_factory(config, seed), lambda: agent, config.learner.unroll_length, seed)
    weights = PublishedWeights(0, [agent.state_dict()])
    rewards, telemetry = [], []
    for _ in range(unrolls):
        rollout = wire.decode(worker.unroll(weights))
        if not np.asarray(rollout.firsts)[0].all():
            raise SystemExit(f"{run}: an unroll began mid-episode; set learner.unroll_length "
                             f"({config.learner.unroll_length}) to the episode's length")
        rewards.append(np.asarray(rollout.rewards))
        telemetry.append(rollout.telemetry)
    print(f"{run.name}, {Path(path).name}: {unrolls} unrolls of {rewards[0].shape[1]} episodes")
    return np.concatenate(rewards, axis=1), telemetry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a checkpoint file (default: the run's newest)")
    parser.add_argument("--unrolls", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--picture", type=Path, default=None, help="a PNG of episode 0's memory access")
    args = parser.parse_args(argv)
    try:
        rewards, telemetry = play(args.run, args.checkpoint, unrolls=args.unrolls, seed=args.seed)
    except CheckpointError as error:
        raise SystemExit(str(error)) from None
    steps, share = share_right_by_step(rewards)
    for first in range(0, len(steps), 8):
        row = share[first:first + 8]
        print(f"answers {first:3d}–{first + len(row) - 1:3d} (steps {steps[first]}–{steps[first + len(row) - 1]}): "
              + " ".join(f"{s:.2f}" for s in row))
    print(f"share right over all {len(steps)} scored steps: {np.mean(share):.3f}")
    result = {"run": str(args.run), "checkpoint": str(args.checkpoint or "newest"), "steps": steps,
              "share_right": share}
    if "read_modes" in telemetry[0]:
        T = rewards.shape[0]
        modes = mean_read_modes(np.concatenate([t["read_modes"][:T] for t in telemetry], axis=1), steps)
        for head, (backward, content, forward) in enumerate(modes):
            print(f"read head {head} on the scored steps: backward {backward:.2f}, content {content:.2f}, "
                  f"forward {forward:.2f}")
        result["read_modes_backward_content_forward"] = modes.tolist()
    if args.picture and "read_rows" in telemetry[0]:
        from matplotlib import pyplot as plt

        from engram import memory_picture

        plt.imsave(args.picture, memory_picture.draw(telemetry[0], env=0, title=f"{args.run.name}, episode 0"))
        print(f"wrote {args.picture}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
