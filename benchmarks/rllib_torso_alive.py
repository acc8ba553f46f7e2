"""How many of an RLlib IMPALA checkpoint's first-layer channels still fire on Atari frames.

engram's own learner logs ``torso/alive/*`` (:mod:`learners.torso_health`); RLlib logs nothing of
the kind. This reads the conv weights of a checkpoint written by ``benchmarks.rllib_impala
--learn-frames`` (no Ray needed), plays ``--steps`` steps of uniform random actions on the
same env RLlib trained on, and counts the first-layer channels that are positive on at least
one patch of those frames. Beside it, the same count for freshly initialised layers of the
same shape (torch's default init, which RLlib's CNN keeps): what the trained layer started
near.

    python -m benchmarks.rllib_torso_alive --checkpoint RUN/algorithm --game pong
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.rllib_impala import make_atari_vector_env
from learners.torso_health import alive_fractions

FIRST_CONV = "encoder.encoder.tokenizer.net.0.cnn.0"  # RLlib 2.60's name for the first conv layer
MODULE_STATE = "learner_group/learner/rl_module/default_policy/module_state.pkl"


def first_layer(checkpoint: Path) -> nn.Sequential:
    """The checkpoint's first conv layer and its ReLU (RLlib's "valid" padding: none)."""
    with open(checkpoint / MODULE_STATE, "rb") as stream:
        state = pickle.load(stream)
    weight = torch.as_tensor(np.asarray(state[f"{FIRST_CONV}.weight"]))
    bias = torch.as_tensor(np.asarray(state[f"{FIRST_CONV}.bias"]))
    out_channels, in_channels, kernel, _ = weight.shape
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=4)  # 16 8×8 / 4 (benchmarks.rllib_impala)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return nn.Sequential(conv, nn.ReLU())


def random_play_frames(game: str, steps: int, every: int = 4, seed: int = 0) -> torch.Tensor:
    """``[N, 4, 84, 84]`` frame stacks (RLlib's [0, 1] input) from 8 envs of uniform random actions."""
    env = make_atari_vector_env({"game": game, "num_envs": 8, "num_threads": 1})
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    kept = []
    for step in range(steps):
        observations, *_ = env.step(rng.integers(0, env.single_action_space.n, env.num_envs))
        if step % every == 0:
            kept.append(observations.copy())
    env.close()
    return torch.from_numpy(np.concatenate(kept)).permute(0, 3, 1, 2)  # NHWC -> NCHW


def alive_share(layer: nn.Sequential, frames: torch.Tensor) -> float:
    return alive_fractions(layer, frames)["torso/alive/output"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="an RLlib run's algorithm/ folder")
    parser.add_argument("--game", required=True)
    parser.add_argument("--steps", type=int, default=400, help="random-play steps of 8 envs (every 4th kept)")
    parser.add_argument("--fresh-seeds", type=int, default=10, help="freshly initialised layers to compare with")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    frames = random_play_frames(args.game, args.steps)
    trained = first_layer(args.checkpoint)
    conv = trained[0]
    fresh = []
    for seed in range(args.fresh_seeds):
        torch.manual_seed(seed)
        layer = nn.Sequential(nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride), nn.ReLU())
        fresh.append(alive_share(layer, frames))
    result = {
        "game": args.game,
        "frames": int(frames.shape[0]),
        "channels": trained[0].out_channels,
        "trained_alive": alive_share(trained, frames),
        "fresh_alive": fresh,
        "checkpoint": str(args.checkpoint),
    }
    print(f"{args.game}: {result['frames']} random-play frame stacks, first conv layer of {result['channels']} channels")
    print(f"  trained checkpoint: {result['trained_alive']:.2f} of channels fire somewhere")
    print(f"  freshly initialised ({len(fresh)} seeds): {np.mean(fresh):.2f} ± {np.std(fresh):.2f} "
          f"(min {min(fresh):.2f}, max {max(fresh):.2f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
