"""Benchmark of the PixelCNN pseudo-count bonus (learners/exploration.py).

Measures, on Montezuma's Revenge frames from random play (ale-py ``AtariVectorEnv``, 4 envs):

1. bonus throughput in frames/s for each way of computing the prediction gain
   (``exact`` + per-frame updates, ``first_order`` + per-frame, ``first_order`` + per-batch),
   timing ``PseudoCountBonus.bonus`` on a time-major ``[T, B]`` batch after one warm-up batch;
2. bits/dim on held-out frames (other seeds, never trained on) before and after training on
   N frames with the default (paper) settings, and with per-batch first-order training;
3. the time to draw a 4-image sample grid (``sample_images``).

``--with-training`` also measures end-to-end training agent steps/s on
``configs/montezuma_pixelcnn.yaml`` without the bonus (``exploration.kind=none``) and with
it at each ``--fractions`` value of ``exploration.frame_fraction`` (the share of transitions
the density model trains on and scores), side by side in one run (the goal: with ≥ 70% of
without). The no-bonus run is repeated at the end, and the ratios use the mean of the two.

Timings use ``--threads`` torch threads (default 1: the development box is shared, and
batch-size-1 convolutions gain nothing from more). Benchmarks never assert timings.

Usage: ``python -m benchmarks.pixelcnn [--quick] [--json PATH] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from learners.exploration import PseudoCountBonus, PseudoCountConfig

MODES = [
    ("exact", "per_frame"),
    ("first_order", "per_frame"),
    ("first_order", "per_batch"),
]


def collect_frames(steps: int, seed: int, num_envs: int = 4) -> torch.Tensor:
    """Random-action Montezuma frames, time-major ``[steps, num_envs, 4, 84, 84]`` uint8."""
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv("montezuma_revenge", num_envs=num_envs, num_threads=1)
    try:
        observations, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        frames = []
        for _ in range(steps):
            frames.append(observations.copy())
            actions = rng.integers(0, env.single_action_space.n, size=num_envs)
            observations, *_ = env.step(actions)
    finally:
        env.close()
    return torch.from_numpy(np.stack(frames))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_throughput(frames: torch.Tensor, device: torch.device, repeats: int) -> list[dict]:
    """frames/s of ``bonus`` for each mode on ``frames`` ``[T, B, ...]`` after a warm-up.

    Each of ``repeats`` batches is timed alone; the best and the median are reported (the
    best is the least disturbed by other processes on a shared machine).
    """
    rows = []
    count = frames.shape[0] * frames.shape[1]
    for pg, update in MODES:
        torch.manual_seed(0)
        bonus = PseudoCountBonus(PseudoCountConfig(pg=pg, update=update), device=device)
        bonus.bonus(frames)  # warm-up (allocations, vmap tracing)
        seconds = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            bonus.bonus(frames)
            _sync(device)
            seconds.append(time.perf_counter() - start)
        rows.append(
            {
                "pg": pg,
                "update": update,
                "frames_per_batch": count,
                "batches": repeats,
                "best_frames_per_s": count / min(seconds),
                "median_frames_per_s": count / float(np.median(seconds)),
            }
        )
    return rows


def measure_bits_per_dim(
    train_frames: torch.Tensor, held_out: torch.Tensor, device: torch.device, batch_steps: int
) -> list[dict]:
    """Held-out bits/dim before/after training on ``train_frames`` ``[T, B, ...]``."""
    rows = []
    for pg, update in [("exact", "per_frame"), ("first_order", "per_batch")]:
        torch.manual_seed(0)
        bonus = PseudoCountBonus(PseudoCountConfig(pg=pg, update=update), device=device)
        held_out_levels = bonus.preprocess(held_out.flatten(0, 1))
        before = bonus.bits_per_dim(held_out_levels)
        start = time.perf_counter()
        train_bits = []
        for t0 in range(0, train_frames.shape[0], batch_steps):
            _, stats = bonus.bonus(train_frames[t0 : t0 + batch_steps])
            train_bits.append(stats["bits_per_dim"])
        seconds = time.perf_counter() - start
        rows.append(
            {
                "pg": pg,
                "update": update,
                "updates": int(bonus.optimizer.state_dict()["state"].get(0, {}).get("step", torch.tensor(0)).item()),
                "frames_trained": bonus.frames_seen,
                "held_out_bits_per_dim_before": before,
                "held_out_bits_per_dim_after": bonus.bits_per_dim(held_out_levels),
                "last_batch_bits_per_dim_before_update": train_bits[-1],
                "train_seconds": seconds,
            }
        )
    return rows


def measure_training_fps(args) -> dict | None:
    """End-to-end training steps/s on Montezuma's Revenge with and without the bonus."""
    import os

    import ray

    from benchmarks.throughput import measure_training
    from engram.config import load_config

    seconds = 20.0 if args.quick else 60.0
    path = "configs/montezuma_pixelcnn.yaml"
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        def steps_per_s(overrides: list[str]) -> float:
            return measure_training(load_config(path, overrides), seconds, warmup_updates=3)["steps_per_s"]

        without = [steps_per_s(["exploration.kind=none"])]
        with_bonus = {}
        for fraction in args.fractions:
            with_bonus[fraction] = steps_per_s([f"exploration.frame_fraction={fraction}"])
            print(f"frame_fraction {fraction}: {with_bonus[fraction]:.0f} steps/s", flush=True)
        without.append(steps_per_s(["exploration.kind=none"]))
        baseline = sum(without) / len(without)
        return {
            "config": path,
            "seconds_per_measurement": seconds,
            "config_frame_fraction": load_config(path).exploration.frame_fraction,
            "steps_per_s_without_bonus": without,
            "fractions": [
                {"frame_fraction": fraction, "steps_per_s": value, "ratio": value / baseline}
                for fraction, value in with_bonus.items()
            ],
        }
    finally:
        if started_ray:
            ray.shutdown()


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute on one core")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--with-training", action="store_true",
                        help="also measure training steps/s with and without the bonus")
    parser.add_argument("--fractions", type=lambda text: [float(v) for v in text.split(",")],
                        default=[1.0, 0.25, 0.1, 0.05],
                        help="exploration.frame_fraction values for --with-training (comma-separated)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    time_steps, repeats, train_steps = (20, 3, 100) if args.quick else (20, 5, 1000)
    start = time.perf_counter()
    train = collect_frames(train_steps, seed=0)  # [train_steps, 4, 4, 84, 84]
    held_out = collect_frames(50, seed=123)[::5]  # 10 steps x 4 envs, other seed
    collect_seconds = time.perf_counter() - start

    throughput = measure_throughput(train[:time_steps], device, repeats)
    quality = measure_bits_per_dim(train, held_out, device, batch_steps=time_steps)
    bonus = PseudoCountBonus(device=device)
    start = time.perf_counter()
    bonus.sample_images(4, generator=torch.Generator().manual_seed(0))
    sample_seconds = time.perf_counter() - start
    with_training = measure_training_fps(args) if args.with_training else None

    print(f"PixelCNN pseudo-count bonus on {device} ({args.threads} thread(s)), batch [T={time_steps}, B=4]")
    print(_table(["pg", "update", "frames/batch", "batches", "best frames/s", "median frames/s"],
                 [[r["pg"], r["update"], r["frames_per_batch"], r["batches"], r["best_frames_per_s"],
                   r["median_frames_per_s"]] for r in throughput]))
    print()
    print(f"bits/dim on {held_out.shape[0] * held_out.shape[1]} held-out frames after training on "
          f"{train.shape[0] * train.shape[1]} frames")
    print(_table(["pg", "update", "optimizer steps", "before", "after", "last train batch", "train s"],
                 [[r["pg"], r["update"], r["updates"], r["held_out_bits_per_dim_before"],
                   r["held_out_bits_per_dim_after"], r["last_batch_bits_per_dim_before_update"],
                   r["train_seconds"]] for r in quality]))
    print(f"\nsample_images(4) at 42x42: {sample_seconds:.2f} s; frame collection {collect_seconds:.1f} s")
    if with_training is not None:
        without = with_training["steps_per_s_without_bonus"]
        print(f"\ntraining on {with_training['config']}: without the bonus {without[0]:.0f} and {without[1]:.0f} steps/s "
              "(before and after)")
        print(_table(["frame_fraction", "steps/s with bonus", "÷ without"],
                     [[r["frame_fraction"], round(r["steps_per_s"]), r["ratio"]] for r in with_training["fractions"]]))

    results = {
        "benchmark": "pixelcnn",
        "quick": args.quick,
        "device": str(device),
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "config": PseudoCountConfig().__dict__,
        "throughput": throughput,
        "bits_per_dim": quality,
        "sample_images_4_seconds": sample_seconds,
        "with_training": with_training,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
