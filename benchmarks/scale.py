"""`engram bench scale`: the pieces a cluster's throughput is made of, measured on this machine.

(a) ``wire``: one actor's rollout encoded and decoded (msgpack, bytes per second), and moved
    from another process through Ray's object store (put there, fetched here);
(b) ``learner``: agent steps the learner trains on per second (fetch-free: decoded rollouts,
    forward, backward, optimiser step), for each config given, on ``--device``;
(c) ``broadcast``: seconds from putting the weights in the object store until N actors hold them;
(d) ``end_to_end``: agent steps per second of real training against the number of actors
    (as many as this machine's CPUs allow) and of learners (``--learners 1,2``: one in the
    driver's process, or data-parallel learner actors).

From these it prints the actors one learner absorbs (learner rate ÷ one actor's rate) and the
bottleneck at each actor count; docs/scaling.md turns the same numbers into a cluster model.
Nothing here asserts a time: the machines are shared, so read ratios from one run.

    engram bench scale [--quick] [--device cuda] [--config ...] [--learners 1,2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

DEFAULT_CONFIGS = ["configs/pong_lstm.yaml", "configs/pong_sam.yaml", "configs/pong_straw.yaml"]


def _rollouts(config, count: int):
    """``count`` real rollouts of ``config``'s env and agent, stepped in this process."""
    from actors import wire
    from actors.rollout import PublishedWeights, RolloutWorker
    from engram import build

    spec = build.probe_env(config)
    make_agent = build.agent_factory(config, spec)
    worker = RolloutWorker(0, build.env_factory(config, seed=0), make_agent, config.learner.unroll_length, seed=0)
    weights = PublishedWeights(0, [make_agent().state_dict()])
    return [wire.decode(worker.unroll(weights)) for _ in range(count)], spec, make_agent


def measure_wire(config, repeats: int) -> dict:
    """(a) encode / decode rates of one rollout, and its trip through the object store."""
    import ray

    from actors import wire

    (rollout,), _, _ = _rollouts(config, 1)
    payload = wire.encode(rollout)
    started = time.perf_counter()
    for _ in range(repeats):
        wire.encode(rollout)
    encode_s = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        wire.decode(payload)
    decode_s = (time.perf_counter() - started) / repeats

    @ray.remote(num_cpus=0)
    class Holder:
        def __init__(self, payload: bytes):
            self.payload = payload

        def send(self) -> bytes:
            return self.payload

    holder = Holder.remote(payload)
    ray.get(holder.send.remote())  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        ray.get(holder.send.remote())
    transfer_s = (time.perf_counter() - started) / repeats
    ray.kill(holder)
    size = len(payload)
    return {
        "rollout_bytes": size,
        "agent_steps_per_rollout": rollout.unroll_length * rollout.num_envs,
        "encode_bytes_per_s": size / encode_s,
        "decode_bytes_per_s": size / decode_s,
        "object_store_bytes_per_s": size / transfer_s,
    }


def measure_learner(path: str, device: str, updates: int, batch_sizes: list[int] | None = None) -> list[dict]:
    """(b) the learner's agent steps per second on ``device``, rollouts already decoded, at the
    config's batch size or at each of ``batch_sizes`` (envs per batch; whole rollouts)."""
    import torch

    from engram import build
    from engram.config import load_config

    config = load_config(path, [f"resources.learner_device={device}"])
    per_rollout = config.resources.envs_per_actor
    sizes = batch_sizes or [config.learner.batch_size]
    rollouts, _, make_agent = _rollouts(config, max(1, max(sizes) // per_rollout))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for size in sizes:
        batch = rollouts[: max(1, size // per_rollout)]
        learner = build.learner(config, make_agent())
        for _ in range(2):  # warm-up: allocator, kernels, the BPTT plan's measurements
            learner.update(batch)
        sync()
        started = time.perf_counter()
        for _ in range(updates):
            learner.update(batch)
        sync()
        seconds = (time.perf_counter() - started) / updates
        steps = sum(r.unroll_length * r.num_envs for r in batch)
        rows.append({
            "core": config.agent.core,
            "device": device,
            "batch_envs": sum(r.num_envs for r in batch),
            "agent_steps_per_update": steps,
            "seconds_per_update": seconds,
            "agent_steps_per_s": steps / seconds,
            "parameters": sum(p.numel() for p in learner.agent.parameters()),
        })
        del learner
    return rows


def measure_broadcast(config, actor_counts: list[int], repeats: int) -> list[dict]:
    """(c) seconds from ``ray.put`` of the weights until every one of N actors has them."""
    import ray

    from actors.rollout import PublishedWeights
    from engram import build

    spec = build.probe_env(config)
    weights = build.agent_factory(config, spec)().state_dict()
    size = sum(t.numel() * t.element_size() for t in weights.values())

    @ray.remote(num_cpus=0)
    class Receiver:
        def take(self, published: PublishedWeights) -> int:
            return len(published.resolve())

    results = []
    for count in actor_counts:
        receivers = [Receiver.remote() for _ in range(count)]
        ray.get([r.take.remote(PublishedWeights(0, [{}])) for r in receivers])  # the actors are up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            published = PublishedWeights(1, [ray.put(weights)])
            ray.get([r.take.remote(published) for r in receivers])
            times.append(time.perf_counter() - started)
        for receiver in receivers:
            ray.kill(receiver)
        results.append({"actors": count, "weight_bytes": size, "seconds": min(times)})
    return results


def measure_end_to_end(path: str, device: str, actor_counts: list[int], seconds: float,
                       learner_counts: tuple[int, ...] = (1,)) -> list[dict]:
    """(d) steps per second of real training against the actor count: one learner in this
    process, or N data-parallel learner actors (their batch grows to N rollouts if smaller)."""
    from benchmarks.throughput import measure_training
    from engram.config import load_config

    results = []
    for learners in learner_counts:
        for count in actor_counts:
            overrides = [f"resources.num_actors={count}", f"resources.learner_device={device}"]
            if learners > 1:
                config = load_config(path)
                batch = max(config.learner.batch_size, config.resources.envs_per_actor * learners)
                overrides += [f"resources.num_learners={learners}", f"learner.batch_size={batch}",
                              "resources.learner_cpus=0.5"]
            trial = load_config(path, overrides)
            measured = measure_training(trial, seconds)
            results.append({"actors": count, "learners": learners, "batch_envs": trial.learner.batch_size, **measured})
    return results


def absorbable_actors(learner_steps_per_s: float, actor_steps_per_s: float) -> float:
    """Actors one learner keeps up with: its training rate over one actor's stepping rate."""
    return learner_steps_per_s / actor_steps_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram bench scale", description=__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", default=None,
                        help=f"configs whose learner to time (repeatable; default {', '.join(DEFAULT_CONFIGS)}); "
                        "the first one is used for (a), (c) and (d)")
    parser.add_argument("--device", default="cpu", help="the learner's torch device for (b)")
    parser.add_argument("--updates", type=int, default=10, help="timed learner updates per config")
    parser.add_argument("--batch-sizes", default="",
                        help="comma-separated learner batch sizes (envs) for (b); default: each config's own")
    parser.add_argument("--seconds", type=float, default=30.0, help="end-to-end measurement time per actor count")
    parser.add_argument("--max-actors", type=int, default=None,
                        help="largest actor count for (d) (default: this machine's CPUs)")
    parser.add_argument("--learners", default="1",
                        help="comma-separated learner counts for (d); more than 1 runs data-parallel learner actors")
    parser.add_argument("--skip", action="append", default=[], choices=["wire", "learner", "broadcast", "end_to_end"],
                        help="leave a measurement out (repeatable)")
    parser.add_argument("--quick", action="store_true", help="3 updates, 8 s per actor count")
    parser.add_argument("--json", default="benchmarks/out/scale.json", help="where to write the results")
    args = parser.parse_args(argv)
    updates, seconds = (3, 8.0) if args.quick else (args.updates, args.seconds)

    import ray
    import torch

    from engram.config import load_config

    paths = args.config or DEFAULT_CONFIGS
    base = load_config(paths[0])
    cpus = os.cpu_count() or 1
    max_actors = args.max_actors or max(1, cpus - 1)
    actor_counts = sorted({1, *[n for n in (2, 4, 8, 16, 32, 64) if n <= max_actors], max_actors})
    torch.set_num_threads(base.resources.learner_torch_threads)
    results: dict = {"setup": {
        "configs": paths, "device": args.device, "cpus": cpus, "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }}
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        if "wire" not in args.skip:
            results["wire"] = measure_wire(base, repeats=20)
        if "learner" not in args.skip:
            sizes = [int(size) for size in args.batch_sizes.split(",") if size.strip()]
            results["learner"] = [row for path in paths for row in measure_learner(path, args.device, updates, sizes)]
        if "broadcast" not in args.skip:
            results["broadcast"] = measure_broadcast(base, [n for n in (1, 4, 16, 64) if n <= 4 * max_actors] or [1], 5)
        if "end_to_end" not in args.skip:
            learner_counts = tuple(int(n) for n in args.learners.split(",") if n.strip())
            results["end_to_end"] = measure_end_to_end(paths[0], args.device, actor_counts, seconds, learner_counts)
    finally:
        if started_ray:
            ray.shutdown()
    report(results)
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as stream:
        json.dump(results, stream, indent=2)
    print(f"wrote {args.json}")
    return 0


def report(results: dict) -> None:
    mib = 2**20
    if "wire" in results:
        w = results["wire"]
        print(f"\n(a) one rollout: {w['rollout_bytes'] / mib:.2f} MiB for {w['agent_steps_per_rollout']} agent steps; "
              f"encode {w['encode_bytes_per_s'] / mib:,.0f} MiB/s, decode {w['decode_bytes_per_s'] / mib:,.0f} MiB/s, "
              f"object store between processes {w['object_store_bytes_per_s'] / mib:,.0f} MiB/s")
    if "learner" in results:
        print(f"\n(b) {'core':8s} {'device':8s} {'params':>10s} {'batch':>6s} {'s/update':>9s} {'agent steps/s':>14s}")
        for row in results["learner"]:
            print(f"    {row['core']:8s} {row['device']:8s} {row['parameters']:10,d} {row['batch_envs']:6d} "
                  f"{row['seconds_per_update']:9.3f} {row['agent_steps_per_s']:14,.0f}")
    if "broadcast" in results:
        print(f"\n(c) {'actors':>6s} {'weights MiB':>12s} {'seconds':>8s}")
        for row in results["broadcast"]:
            print(f"    {row['actors']:6d} {row['weight_bytes'] / mib:12.2f} {row['seconds']:8.3f}")
    if "end_to_end" in results:
        one_actor = results["end_to_end"][0]["steps_per_s"]
        learner = results["learner"][0] if "learner" in results else None
        if learner is not None:
            results["absorbable_actors"] = absorbable_actors(learner["agent_steps_per_s"], one_actor)
        print(f"\n(d) {'learners':>8s} {'actors':>6s} {'batch':>6s} {'agent steps/s':>14s} {'updates/s':>10s} "
              f"{'x one actor':>12s}  bottleneck")
        for row in results["end_to_end"]:
            if learner is not None and row.get("learners", 1) == 1:
                row["bottleneck"] = "actors" if row["actors"] < results["absorbable_actors"] else "learner"
            print(f"    {row.get('learners', 1):8d} {row['actors']:6d} {row.get('batch_envs', 0):6d} "
                  f"{row['steps_per_s']:14,.0f} {row['updates_per_s']:10.2f} "
                  f"{row['steps_per_s'] / one_actor:12.2f}  {row.get('bottleneck', '')}")
        if learner is not None:
            print(f"\none learner ({learner['core']}, {learner['device']}, batch {learner['batch_envs']}) trains "
                  f"{learner['agent_steps_per_s']:,.0f} agent steps/s; one actor gives {one_actor:,.0f}: it absorbs "
                  f"about {results['absorbable_actors']:.1f} actors; below that the actors are the bottleneck, "
                  "above it the learner")
