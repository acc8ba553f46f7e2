"""Throughput of the runtime on one machine, measured side by side in one run.

(a) ``raw``: ale-py's ``AtariVectorEnv`` stepped with random actions (the ceiling);
(b) ``actors``: engram rollout actors with agent inference, no learning;
(c) ``train``: engram end-to-end training (actors + V-trace learner);
(d) ``rllib``: RLlib IMPALA on the same game, torso, LSTM size and unroll length.

Prints agent steps/s, frames/s and ratios; writes JSON with ``raw_steps_per_s``,
``actor_steps_per_s``, ``train_steps_per_s`` and ``rllib_train_steps_per_s``. Numbers on
shared machines are noisy: compare the ratios from one run, never absolute times.

    python -m benchmarks.throughput [--quick] [--json PATH] [--config configs/pong_lstm.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def measure_raw(config, seconds: float) -> float:
    from envs.atari import AtariSettings, make_atari_vector_env

    options = config.env.atari.model_dump()
    game, threads = options.pop("game"), options.pop("num_threads")
    env = make_atari_vector_env(game, config.resources.envs_per_actor, settings=AtariSettings(**options), num_threads=threads)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = env.single_action_space.n
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        env.step(rng.integers(0, actions, config.resources.envs_per_actor))
        steps += config.resources.envs_per_actor
    elapsed = time.perf_counter() - started
    env.close()
    return steps / elapsed


def measure_actors(config, seconds: float) -> float:
    import ray

    from actors.rollout import PublishedWeights, RolloutWorker
    from engram import build

    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    weights = PublishedWeights(0, [ray.put(make_agent().state_dict())])
    remote = ray.remote(num_cpus=config.resources.cpus_per_actor)(RolloutWorker)
    actors = [
        remote.remote(i, build.env_factory(config, seed=i), make_agent, config.learner.unroll_length, i)
        for i in range(config.resources.num_actors)
    ]
    ray.get([a.unroll.remote(weights) for a in actors])  # warm-up
    pending = {a.unroll.remote(weights): a for a in actors}
    steps_per_rollout = config.learner.unroll_length * config.resources.envs_per_actor
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        ready, _ = ray.wait(list(pending), num_returns=1)
        actor = pending.pop(ready[0])
        ray.get(ready[0])
        steps += steps_per_rollout
        pending[actor.unroll.remote(weights)] = actor
    elapsed = time.perf_counter() - started
    for actor in actors:
        ray.kill(actor)
    return steps / elapsed


def measure_training(config, seconds: float, warmup_updates: int = 5) -> dict:
    import torch

    from engram import build
    from learners.driver import Driver

    torch.set_num_threads(config.resources.learner_torch_threads)
    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    learner = build.placed_learner(config, make_agent, spec)  # in this process, or actors (num_learners > 1)
    marks: dict = {}

    def on_update(progress, metrics, rollouts):
        if learner.updates == warmup_updates:
            marks["start"] = (time.perf_counter(), progress.env_steps, learner.updates)
        marks["end"] = (time.perf_counter(), progress.env_steps, learner.updates)

    def should_stop() -> bool:
        return "start" in marks and time.perf_counter() - marks["start"][0] >= seconds

    settings = build.driver_settings(config, total_steps=10**12)
    try:
        Driver(settings, learner, build.env_factory(config, 0), make_agent, on_update=on_update,
               should_stop=should_stop).run()
    finally:
        learner.close()
    (t0, s0, u0), (t1, s1, u1) = marks["start"], marks["end"]
    return {"steps_per_s": (s1 - s0) / (t1 - t0), "updates_per_s": (u1 - u0) / (t1 - t0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram bench throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/pong_lstm.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as for engram train (repeatable)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement time per configuration")
    parser.add_argument("--quick", action="store_true", help="10 s per configuration")
    parser.add_argument("--skip-rllib", action="store_true", help="leave out (d), RLlib IMPALA")
    parser.add_argument("--json", default="benchmarks/out/throughput.json", help="where to write the results")
    args = parser.parse_args(argv)
    seconds = 10.0 if args.quick else args.seconds

    import ray

    from engram.config import load_config

    config = load_config(args.config, args.overrides)
    frameskip = config.env.frames_per_step
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        results = {"raw_steps_per_s": measure_raw(config, seconds)}
        results["actor_steps_per_s"] = measure_actors(config, seconds)
        training = measure_training(config, seconds)
        results["train_steps_per_s"] = training["steps_per_s"]
        results["train_updates_per_s"] = training["updates_per_s"]
        if not args.skip_rllib:
            from benchmarks.rllib_impala import measure_rllib_impala

            rllib = measure_rllib_impala(
                game=config.env.atari.game,
                seconds=seconds,
                num_envs=config.resources.envs_per_actor,
                unroll_length=config.learner.unroll_length,
                lstm_size=config.agent.lstm.hidden_size,
            )
            results["rllib_train_steps_per_s"] = rllib["train_steps_per_s"]
            results["rllib"] = rllib
    finally:
        if started_ray:
            ray.shutdown()

    raw = results["raw_steps_per_s"]
    rows = [("(a) raw AtariVectorEnv", raw), ("(b) engram actors only", results["actor_steps_per_s"]),
            ("(c) engram training", results["train_steps_per_s"])]
    if "rllib_train_steps_per_s" in results:
        rows.append(("(d) RLlib IMPALA training", results["rllib_train_steps_per_s"]))
    print(f"\n{'configuration':28s} {'steps/s':>10s} {'frames/s':>10s} {'÷ raw':>7s}")
    for name, value in rows:
        print(f"{name:28s} {value:10,.0f} {value * frameskip:10,.0f} {value / raw:7.2f}")
    if "rllib_train_steps_per_s" in results:
        ratio = results["train_steps_per_s"] / max(results["rllib_train_steps_per_s"], 1e-9)
        results["engram_over_rllib"] = ratio
        print(f"engram training / RLlib IMPALA: {ratio:.1f}x")
    results["setup"] = {
        "config": args.config,
        "overrides": args.overrides,
        "game": config.env.atari.game,
        "num_actors": config.resources.num_actors,
        "envs_per_actor": config.resources.envs_per_actor,
        "unroll_length": config.learner.unroll_length,
        "batch_size": config.learner.batch_size,
        "seconds_per_measurement": seconds,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as stream:
        json.dump(results, stream, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
