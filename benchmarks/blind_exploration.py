"""Blind exploration: how often random macro-actions of a given length find a maze's goal.

The claim behind STRAW's commitment (Vezhnevets et al. 2016, §1) is structured exploration:
an agent that keeps an action for several steps covers more ground than one that dithers.
This measures the claim on our mazes before any learning: each env repeats a random action
for a random number of steps, drawn from a geometric law of mean L (L = 1 is one-step
dithering), and we count the share of episodes that reach the goal before the step limit.
The bigger that share grows with L on a layout, the more a committed plan can gain there.

    python -m benchmarks.blind_exploration [--layouts 11:0:60,15:1:100,21:1:200]
        [--lengths 1,2,3,5,8] [--envs 512] [--episodes 3000] [--json PATH]
    (or engram bench blind_exploration ...)

A layout is ``size:openness:max_steps`` of ``envs.maze.MazeVectorEnv`` (openness 0 is a
perfect maze, 1 an open room with posts).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from envs.maze import MazeVectorEnv


def success_share(size: int, openness: float, max_steps: int, mean_length: float, *, envs: int = 512,
                  episodes: int = 3000, seed: int = 0) -> tuple[float, int]:
    """(share of episodes that reached the goal, episodes counted) under random macro-actions
    whose lengths are geometric with mean ``mean_length``."""
    env = MazeVectorEnv(envs, size=size, max_steps=max_steps, seed=seed, pool_size=64, openness=openness)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = np.zeros(envs, dtype=np.int64)
    steps_left = np.zeros(envs, dtype=np.int64)
    successes = []
    while len(successes) < episodes:
        replan = steps_left <= 0
        actions = np.where(replan, rng.integers(4, size=envs), actions)
        steps_left = np.where(replan, rng.geometric(1.0 / mean_length, size=envs), steps_left) - 1
        _, _, _, _, info = env.step(actions)
        if "final_info" in info:
            ended = info["_final_info"]
            successes.extend(info["final_info"]["success"][ended].tolist())
    return float(np.mean(successes)), len(successes)


def _layout(text: str) -> tuple[int, float, int]:
    size, openness, max_steps = text.split(":")
    return int(size), float(openness), int(max_steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram bench blind_exploration", description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="11:0:60,15:1:100,21:1:200", help="size:openness:max_steps, comma-separated")
    parser.add_argument("--lengths", default="1,2,3,5,8", help="mean macro-action lengths L")
    parser.add_argument("--envs", type=int, default=512)
    parser.add_argument("--episodes", type=int, default=3000, help="episodes counted per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="where to write the table as JSON")
    args = parser.parse_args(argv)
    layouts = [_layout(item) for item in args.layouts.split(",") if item.strip()]
    lengths = [float(item) for item in args.lengths.split(",") if item.strip()]
    rows = []
    print(f"{'size':>4s} {'openness':>8s} {'max steps':>9s} " + " ".join(f"{'L=' + f'{n:g}':>7s}" for n in lengths))
    for size, openness, max_steps in layouts:
        shares = [success_share(size, openness, max_steps, n, envs=args.envs, episodes=args.episodes, seed=args.seed)[0]
                  for n in lengths]
        rows.append({"size": size, "openness": openness, "max_steps": max_steps,
                     "success": dict(zip((f"{n:g}" for n in lengths), shares))})
        print(f"{size:4d} {openness:8g} {max_steps:9d} " + " ".join(f"{share:7.2f}" for share in shares), flush=True)
    print("share of episodes that reach the goal under random macro-actions of mean length L (L = 1: dithering)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"benchmark": "blind_exploration", "episodes": args.episodes,
                                               "envs": args.envs, "seed": args.seed, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
