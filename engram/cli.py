"""The `engram` command line: train, eval and bench."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from engram.checkpoint import CheckpointError
from engram.config import ConfigError
from learners.errors import DivergenceError, LearnerLost

BENCHMARKS = {
    "throughput": "benchmarks.throughput",
    "bptt": "benchmarks.bptt",
    "sam": "benchmarks.sam",
    "pixelcnn": "benchmarks.pixelcnn",
    "learning": "benchmarks.learning",
    "memory": "benchmarks.memory",
    "lag_recall": "benchmarks.lag_recall",
    "blind_exploration": "benchmarks.blind_exploration",
    "density": "benchmarks.density",
    "text": "benchmarks.text",
    "scale": "benchmarks.scale",
}


def _levels(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 8,16,32, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engram", description="Distributed RL for agents with long memories.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train an agent from a YAML config")
    train.add_argument("config", help="path to a YAML config, e.g. configs/pong_lstm.yaml")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set learner.learning_rate=3e-4 (repeatable)")
    train.add_argument("--run-dir", help="run folder (default: <run.runs_root>/<run.name>); may be absolute")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    train.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                       help="join this Ray cluster (default: $RAY_ADDRESS, else start Ray locally)")

    evaluate = commands.add_parser("eval", help="play episodes with a trained checkpoint")
    evaluate.add_argument("checkpoint", help="a ckpt-*.pt file, or a run folder (plays its newest checkpoint)")
    evaluate.add_argument("--episodes", type=int, default=10, help="episodes to play (default 10)")
    evaluate.add_argument("--video", metavar="PATH", help="write the first episode as a video (.mp4 or .gif)")
    evaluate.add_argument("--seed", type=int, default=12345, help="environment seed")
    evaluate.add_argument("--levels", type=_levels, metavar="N,N,...",
                          help="memory_task checkpoints: the levels to test generalisation at (e.g. 8,16,32)")
    evaluate.add_argument("--sequences", type=int, default=64,
                          help="memory_task checkpoints: fresh sequences per level (default 64)")

    plan = commands.add_parser("plan", help="show what a config's unroll will hold for backward and recompute")
    plan.add_argument("config", help="path to a YAML config")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value, e.g. --set learner.bptt.memory_budget=2GiB (repeatable)")
    plan.add_argument("--render", type=int, default=0, metavar="N", help="also print the plan's first N actions")

    bench = commands.add_parser("bench", help="run a benchmark (prints a table, writes JSON)")
    bench.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (e.g. --quick)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.command == "train":
            from engram.config import load_config
            from engram.train import train

            config = load_config(args.config, args.overrides)
            run_dir = train(config, args.run_dir, resume=args.resume, address=args.address)
            print(f"run folder: {run_dir}")
            return 0
        if args.command == "eval":
            from engram.evaluate import evaluate

            evaluate(args.checkpoint, episodes=args.episodes, video=args.video, seed=args.seed,
                     levels=args.levels, sequences=args.sequences)
            return 0
        if args.command == "plan":
            from engram.config import load_config
            from engram.plan_preview import describe, preview
            from learners.bptt_plan import BudgetTooSmallError

            config = load_config(args.config, args.overrides)
            try:
                print(describe(preview(config), render_actions=args.render))
            except BudgetTooSmallError as error:
                print(f"engram: error: learner.bptt.memory_budget: {error}", file=sys.stderr)
                return 2
            return 0
        if args.command == "bench":
            import importlib

            module = importlib.import_module(BENCHMARKS[args.name])
            result = module.main(args.args)
            return result if isinstance(result, int) else 0
    except (ConfigError, CheckpointError) as error:
        print(f"engram: error: {error}", file=sys.stderr)
        return 2
    except ConnectionError as error:
        print(
            f"engram: error: cannot join the Ray cluster at {getattr(args, 'address', None)}: {error} "
            "(a token-protected cluster needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)",
            file=sys.stderr,
        )
        return 2
    except DivergenceError as error:
        print(f"engram: error: {error}", file=sys.stderr)
        return 3
    except LearnerLost as error:
        print(f"engram: error: {error}", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
