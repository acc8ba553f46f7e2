"""The peer baseline: RLlib's IMPALA on the same Atari setup as ours.

Trains RLlib's IMPALA (new API stack: RLModule + Learner + EnvRunner, torch, learner on CPU
in the driver) either for a fixed wall-clock budget, reporting env steps per second sampled
and trained from RLlib's own lifetime counters (``engram bench throughput``), or for a frame
budget, writing a learning curve of raw scores (``--learn-frames``, used by
``engram bench learning --against rllib``).

Settings, matched to ours where RLlib allows (all recorded in the returned dict):

* Environment: the same ``ale_py.vector_env.AtariVectorEnv`` (C++ threads) as
  ``envs.atari``, handed to RLlib through gymnasium's ``vector_entry_point`` vectorize mode:
  Machado et al. 2018 protocol (sticky actions 0.25, full 18-action set, frameskip 4 with a
  max-pool over the last two frames, 84×84 greyscale, frame stack 4, no life-loss end, no
  no-op starts, no fire reset, 108,000-frame cap), NEXT_STEP autoreset (what RLlib's
  EnvRunner expects). Rewards are clipped to [-1, 1] for training by an env wrapper
  (RLlib 2.60's new stack ignores ``clip_rewards``), which also logs raw episode scores.
  RLlib's default CNN wants float, channels-last images, so a vector observation wrapper
  turns ``uint8 [N, 4, 84, 84]`` into ``float32 [N, 84, 84, 4]`` in [0, 1] in the EnvRunner
  (RLlib's own Atari wrappers also normalise to float32 inside the env).
* Model: RLlib's default (PPO-style) RLModule with ``conv_filters`` 16 8×8/4 → 32 4×4/2 →
  256 9×9/1 "valid" (the last conv covers the whole 9×9 map, so it *is* the FC 256 of the
  IMPALA shallow torso), ReLU, then an LSTM 256, shared value/policy layers, linear heads.
  Not matched: RLlib's new-stack default module cannot feed the previous action and reward
  into the LSTM (ours does; ~19 extra LSTM inputs, negligible compute).
* Unroll / batch: ``rollout_fragment_length`` = ``max_seq_len`` = 20,
  ``train_batch_size_per_learner`` = 32 × 20 = 640 env steps.
* Loss / optimiser: V-trace (ρ̄ = c̄ = 1), γ 0.99, value cost 0.5, entropy 0.01, grad-norm
  clip 40, lr 6e-4. Not matched: RLlib's new-stack learner uses Adam (ours: RMSProp); this
  does not change throughput.
* Resources: ``num_env_runners`` EnvRunner actors (1 CPU each), ``num_learners=0`` (the
  learner runs synchronously in the driver process), no GPU; Ray started with 2 CPUs.
  Weights reach the EnvRunner through RLlib 2.60's default pull-based
  ``EnvRunnerStateServer`` (``--no-state-server`` pushes instead; slower here).
  Quick sweep on the shared 2-core box (20 s each, noisy): 1 runner × 32 or 64 envs
  ≈ 800 env steps/s; 1 × 16 ≈ 450; 2 × 16 ≈ 270; 2 × 32 ≈ 400 (two runners plus the
  driver's learner oversubscribe two cores). Default: 1 × 32, which is also our num_envs.

Timing: after ``build_algo()``, ``train()`` is called until the learner has trained on at
least one batch (the EnvRunner and state-server actors can take tens of seconds to come up
on a loaded machine), plus one more iteration; then ``train()`` runs for ``seconds`` of
wall time (``min_time_s_per_iteration`` = 5 s) and the lifetime counters' increase over
that window, divided by its length, gives the rates. ``train_steps_per_s`` counts env
steps the learner trained on.

    python -m benchmarks.rllib_impala [--seconds 60] [--json PATH]
    python -m benchmarks.rllib_impala --game breakout --learn-frames 2000000 --seed 0 --run-dir DIR
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from gymnasium.vector import VectorWrapper

ENV_NAME = "engram_rllib_atari_vector"
STACK = 4
SIZE = 84


def make_atari_vector_env(config) -> "object":
    """RLlib env creator (``vector_entry_point``): the env runner passes ``num_envs``."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode
    from gymnasium.vector.utils import batch_space
    from gymnasium.wrappers.vector import TransformObservation
    from ale_py.vector_env import AtariVectorEnv

    num_envs = int(config.get("num_envs", 1))
    env = AtariVectorEnv(
        config["game"],
        num_envs,
        num_threads=int(config.get("num_threads", 0)),
        max_num_frames_per_episode=108_000,
        repeat_action_probability=0.25,
        full_action_space=True,
        autoreset_mode=AutoresetMode.NEXT_STEP,
        img_height=SIZE,
        img_width=SIZE,
        grayscale=True,
        stack_num=STACK,
        frameskip=4,
        maxpool=True,
        noop_max=0,
        episodic_life=False,
        reward_clipping=False,
        use_fire_reset=False,
    )
    single = gym.spaces.Box(0.0, 1.0, (SIZE, SIZE, STACK), np.float32)
    scale = np.float32(1.0 / 255.0)

    def to_float_hwc(obs):
        return np.multiply(np.transpose(obs, (0, 2, 3, 1)), scale, dtype=np.float32)

    env = TransformObservation(
        env,
        to_float_hwc,
        observation_space=batch_space(single, num_envs),
        single_observation_space=single,
    )
    return ClippedRewardsRawScores(env, config.get("episode_log"))


class ClippedRewardsRawScores(VectorWrapper):
    """Trains on rewards clipped to [-1, 1], as engram's learner does (RLlib 2.60's new stack
    ignores ``clip_rewards``), and appends each finished episode's raw game score to
    ``episode_log`` (one number per line): the score the learning curves report."""

    def __init__(self, env, episode_log: str | None):
        super().__init__(env)
        self.episode_log = episode_log
        self.raw_returns = np.zeros(env.num_envs, np.float64)

    def reset(self, **kwargs):
        self.raw_returns[:] = 0.0
        return self.env.reset(**kwargs)

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        self.raw_returns += rewards
        done = np.logical_or(terminated, truncated)
        if done.any():
            if self.episode_log:
                with open(self.episode_log, "a") as stream:
                    stream.writelines(f"{score:g}\n" for score in self.raw_returns[done])
            self.raw_returns[done] = 0.0
        return obs, np.clip(rewards, -1.0, 1.0).astype(np.float32), terminated, truncated, info


def _load_average() -> float | None:
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _find(result: dict, key: str, under: str | None = None):
    """First value of ``key`` in a nested result dict (optionally below top-level ``under``)."""
    stack = [result.get(under)] if under is not None else [result]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node and not isinstance(node[key], dict):
                return node[key]
            stack.extend(v for v in node.values() if isinstance(v, dict))
    return None


def require_rllib() -> None:
    """RLlib is an extra of engram's (``rllib``), not a dependency: say so when it is missing."""
    try:
        import ray.rllib  # noqa: F401
    except ImportError as error:
        raise SystemExit(
            "RLlib is not installed: it is engram's `rllib` extra (pip install -c constraints.txt -e '.[rllib]'; "
            "`make install` installs it)"
        ) from error


def _counters(result: dict) -> tuple[float, float]:
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        LEARNER_RESULTS,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        NUM_ENV_STEPS_TRAINED_LIFETIME,
    )

    sampled = _find(result, NUM_ENV_STEPS_SAMPLED_LIFETIME, ENV_RUNNER_RESULTS)
    if sampled is None:
        sampled = _find(result, NUM_ENV_STEPS_SAMPLED_LIFETIME)
    trained = _find(result, NUM_ENV_STEPS_TRAINED_LIFETIME, LEARNER_RESULTS)
    if trained is None:
        trained = _find(result, NUM_ENV_STEPS_TRAINED_LIFETIME)
    return float(sampled or 0.0), float(trained or 0.0)


def build_config(
    *,
    game: str,
    num_envs: int,
    unroll_length: int,
    lstm_size: int,
    num_env_runners: int,
    seed: int,
    batch_sequences: int = 32,
    num_threads: int = 0,
    min_time_s_per_iteration: float = 5.0,
    use_env_runner_state_server: bool = True,
):
    require_rllib()
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    final_map = ((SIZE - 8) // 4 + 1 - 4) // 2 + 1  # 84 -> 20 -> 9
    model = DefaultModelConfig(
        conv_filters=[
            [16, [8, 8], 4, "valid"],
            [32, [4, 4], 2, "valid"],
            [256, [final_map, final_map], 1, "valid"],  # == FC 256 over the 9x9x32 map
        ],
        conv_activation="relu",
        use_lstm=True,
        lstm_cell_size=lstm_size,
        max_seq_len=unroll_length,
        vf_share_layers=True,
        head_fcnet_hiddens=[],
    )
    config = (
        IMPALAConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .framework("torch")
        .environment(
            ENV_NAME,
            env_config={"game": game, "num_threads": num_threads},
        )
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs,
            num_cpus_per_env_runner=1,
            rollout_fragment_length=unroll_length,
            gym_env_vectorize_mode="vector_entry_point",
            use_env_runner_state_server=use_env_runner_state_server,
        )
        .learners(num_learners=0, num_gpus_per_learner=0)
        .training(
            train_batch_size_per_learner=batch_sequences * unroll_length,
            lr=6e-4,
            gamma=0.99,
            grad_clip=40.0,
            grad_clip_by="global_norm",
            vf_loss_coeff=0.5,
            entropy_coeff=0.01,
            vtrace_clip_rho_threshold=1.0,
            vtrace_clip_pg_rho_threshold=1.0,
        )
        .rl_module(model_config=model)
        .reporting(min_time_s_per_iteration=min_time_s_per_iteration)
        .debugging(seed=seed, log_level="ERROR")
    )
    return config


def measure_rllib_impala(
    *,
    game: str = "pong",
    seconds: float = 60.0,
    num_envs: int = 32,
    unroll_length: int = 20,
    lstm_size: int = 256,
    num_env_runners: int = 1,
    seed: int = 0,
    use_env_runner_state_server: bool = True,
    max_warmup_s: float = 180.0,
) -> dict:
    """Train RLlib IMPALA for ``seconds`` of wall time (after one warm-up iteration).

    Returns env steps per second sampled (``sample_steps_per_s``) and trained on
    (``train_steps_per_s``), from RLlib's ``num_env_steps_{sampled,trained}_lifetime``
    counters, plus the settings used and the RLlib version.
    """
    import ray
    import torch
    from ray.tune.registry import register_env

    started_ray = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stray cluster
        started_ray = True
    register_env(ENV_NAME, make_atari_vector_env)

    batch_sequences = 32
    config = build_config(
        game=game,
        num_envs=num_envs,
        unroll_length=unroll_length,
        lstm_size=lstm_size,
        num_env_runners=num_env_runners,
        seed=seed,
        batch_sequences=batch_sequences,
        use_env_runner_state_server=use_env_runner_state_server,
    )
    algo = None
    try:
        t_build = time.perf_counter()
        algo = config.build_algo()
        build_s = time.perf_counter() - t_build

        # Warm-up (not timed): iterate until the learner has trained on at least one batch
        # (actor start-up on a loaded machine can take a while), then one more iteration.
        t_warm = time.perf_counter()
        warmup_iterations = 0
        while True:
            result = algo.train()
            warmup_iterations += 1
            if _counters(result)[1] > 0 or time.perf_counter() - t_warm > max_warmup_s:
                break
        result = algo.train()
        warmup_iterations += 1
        warmup_s = time.perf_counter() - t_warm
        sampled0, trained0 = _counters(result)

        iterations = 0
        t0 = time.perf_counter()
        while True:
            result = algo.train()
            iterations += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        sampled1, trained1 = _counters(result)
        num_params = sum(p.numel() for p in algo.get_module().parameters())
        module_repr = repr(algo.get_module())
    finally:
        if algo is not None:
            algo.stop()
        if started_ray:
            ray.shutdown()

    return {
        "framework": "rllib",
        "algorithm": "IMPALA (new API stack: RLModule/Learner/EnvRunner, torch)",
        "rllib_version": ray.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "load_average_1m_at_end": _load_average(),
        "game": game,
        "seconds": elapsed,
        "iterations": iterations,
        "build_s": build_s,
        "warmup_s": warmup_s,
        "warmup_iterations": warmup_iterations,
        "env_steps_sampled": sampled1 - sampled0,
        "env_steps_trained": trained1 - trained0,
        "sample_steps_per_s": (sampled1 - sampled0) / elapsed,
        "train_steps_per_s": (trained1 - trained0) / elapsed,
        "num_env_steps_sampled_lifetime": sampled1,
        "num_env_steps_trained_lifetime": trained1,
        "settings": {
            "env": "ale_py.vector_env.AtariVectorEnv via gymnasium vector_entry_point "
            "(+ uint8 CHW -> float32 HWC /255 observation wrapper)",
            "sticky_action_probability": 0.25,
            "full_action_space": True,
            "frameskip": 4,
            "maxpool": True,
            "image": [SIZE, SIZE],
            "frame_stack": STACK,
            "noop_max": 0,
            "episodic_life": False,
            "fire_reset": False,
            "clip_rewards": "to [-1, 1] in the env wrapper (RLlib 2.60's new stack ignores clip_rewards)",
            "model": "conv 16 8x8/4, conv 32 4x4/2, conv 256 9x9/1 valid (= FC 256), ReLU; "
            f"LSTM {lstm_size}; shared value/policy; no prev action/reward inputs",
            "num_params": num_params,
            "num_env_runners": num_env_runners,
            "num_envs_per_env_runner": num_envs,
            "rollout_fragment_length": unroll_length,
            "max_seq_len": unroll_length,
            "train_batch_size_per_learner": batch_sequences * unroll_length,
            "num_learners": 0,
            "use_env_runner_state_server": use_env_runner_state_server,
            "learner_device": "cpu (driver process)",
            "optimizer": "adam (RLlib new-stack default; ours is RMSProp)",
            "lr": 6e-4,
            "grad_clip": 40.0,
            "gamma": 0.99,
            "vf_loss_coeff": 0.5,
            "entropy_coeff": 0.01,
            "ray_num_cpus": 2,
            "torch_threads_driver": torch.get_num_threads(),
        },
        "module": module_repr,
    }


def learn_rllib_impala(
    *,
    game: str,
    frames: int,
    seed: int,
    run_dir: str,
    num_envs: int = 32,
    unroll_length: int = 20,
    lstm_size: int = 256,
    checkpoint_interval_s: float = 300.0,
) -> None:
    """Train RLlib IMPALA until ``frames`` ALE frames, for a learning curve; resumable.

    Writes in ``run_dir``: ``episodes.log`` (each finished episode's raw score),
    ``curve.jsonl`` (per iteration: ``frames`` = env steps × frameskip 4, and
    ``return_mean100`` = the mean raw score of the last 100 episodes; a ``resumed`` line where
    a later call continued), ``algorithm/`` and
    ``progress.json`` (a checkpoint every ``checkpoint_interval_s``; a later call resumes from
    it, dropping what was logged after it) and ``done`` once ``frames`` is reached.
    """
    require_rllib()
    import ray
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.tune.registry import register_env

    directory = Path(run_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    episodes, curve, progress_path = directory / "episodes.log", directory / "curve.jsonl", directory / "progress.json"
    started_ray = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        started_ray = True
    register_env(ENV_NAME, make_atari_vector_env)
    config = build_config(
        game=game, num_envs=num_envs, unroll_length=unroll_length, lstm_size=lstm_size, num_env_runners=1,
        seed=seed, min_time_s_per_iteration=5.0,
    )
    config.env_config["episode_log"] = str(episodes)
    progress = json.loads(progress_path.read_text()) if progress_path.exists() else None
    algo = None
    try:
        if progress is not None:  # resume: forget what followed the checkpoint
            _truncate_lines(episodes, progress["episodes"])
            _truncate_lines(curve, progress["curve_points"])
            algo = Algorithm.from_checkpoint(str(directory / "algorithm"))
            frames_done = progress["frames"]
            with open(curve, "a") as stream:
                stream.write(json.dumps({"frames": frames_done, "resumed": True, "time": time.time()}) + "\n")
        else:
            for stale in (episodes, curve):
                stale.unlink(missing_ok=True)
            algo = config.build_algo()
            frames_done = 0
        saved_lifetime = progress.get("sampled_lifetime", 0.0) if progress is not None else 0.0
        baseline = None  # the lifetime count frames_done stands for (0 if the restore reset it)
        last_save = time.monotonic()
        frames_now = frames_done
        while frames_done < frames:
            result = algo.train()
            sampled, _ = _counters(result)
            if baseline is None:
                baseline = saved_lifetime if sampled >= saved_lifetime else 0.0
            frames_now = frames_done + int((sampled - baseline) * 4)
            scores = _read_scores(episodes)
            with open(curve, "a") as stream:
                stream.write(json.dumps({
                    "frames": frames_now,
                    "return_mean100": float(np.mean(scores[-100:])) if scores else None,
                    "episodes": len(scores),
                    "time": time.time(),
                }) + "\n")
            if frames_now >= frames or time.monotonic() - last_save >= checkpoint_interval_s:
                algo.save_to_path(str(directory / "algorithm"))
                progress_path.write_text(json.dumps({
                    "frames": frames_now, "episodes": len(_read_scores(episodes)),
                    "curve_points": len(curve.read_text().splitlines()), "sampled_lifetime": sampled,
                }))
                last_save = time.monotonic()
            if frames_now >= frames:
                break
        (directory / "done").write_text(json.dumps({"frames": frames_now, "rllib_version": ray.__version__}))
    finally:
        if algo is not None:
            algo.stop()
        if started_ray:
            ray.shutdown()


def _read_scores(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [float(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_lines(path: Path, keep: int) -> None:
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:keep]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="pong")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--num-env-runners", type=int, default=1)
    parser.add_argument("--unroll-length", type=int, default=20)
    parser.add_argument("--lstm-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-state-server",
        action="store_true",
        help="push weights to EnvRunners instead of RLlib 2.60's default pull-based EnvRunnerStateServer",
    )
    parser.add_argument("--json", default=None, help="write the result dict here")
    parser.add_argument("--learn-frames", type=int, default=None,
                        help="instead of timing: train until this many ALE frames for a learning curve (needs --run-dir)")
    parser.add_argument("--run-dir", default=None, help="where --learn-frames keeps its curve and checkpoints")
    args = parser.parse_args(argv)
    if args.learn_frames is not None:
        if not args.run_dir:
            parser.error("--learn-frames needs --run-dir")
        learn_rllib_impala(game=args.game, frames=args.learn_frames, seed=args.seed, run_dir=args.run_dir,
                           num_envs=args.num_envs, unroll_length=args.unroll_length, lstm_size=args.lstm_size)
        return {}

    out = measure_rllib_impala(
        game=args.game,
        seconds=args.seconds,
        num_envs=args.num_envs,
        unroll_length=args.unroll_length,
        lstm_size=args.lstm_size,
        num_env_runners=args.num_env_runners,
        seed=args.seed,
        use_env_runner_state_server=not args.no_state_server,
    )
    s = out["settings"]
    rows = [
        ("rllib", out["rllib_version"]),
        ("game", out["game"]),
        ("env runners x envs", f"{s['num_env_runners']} x {s['num_envs_per_env_runner']}"),
        ("unroll / batch", f"{s['rollout_fragment_length']} / {s['train_batch_size_per_learner']} steps"),
        ("state server", str(s["use_env_runner_state_server"])),
        ("warm-up", f"{out['warmup_s']:.1f} s ({out['warmup_iterations']} iterations)"),
        ("timed seconds", f"{out['seconds']:.1f} ({out['iterations']} iterations)"),
        ("env steps sampled", f"{out['env_steps_sampled']:.0f}"),
        ("env steps trained", f"{out['env_steps_trained']:.0f}"),
        ("sample steps/s", f"{out['sample_steps_per_s']:.1f}"),
        ("train steps/s", f"{out['train_steps_per_s']:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
