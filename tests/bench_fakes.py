"""A stand-in for a sweep's training step, shared by the benchmark tests."""

from __future__ import annotations

import json


def run_failing_seed_zero(env_kind: str, mean_return: float = 0.5):
    """A ``run_engram`` that raises for seed 0 (a run that stopped short) and, for any other
    seed, writes a finished run of ``env_kind`` whose last mean return is ``mean_return``."""

    def run(spec, out):
        if spec.seed == 0:
            raise RuntimeError(f"seed {spec.seed} diverged")
        folder = spec.folder(out)
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(f"env: {{kind: {env_kind}}}\n")
        (folder / "metrics.jsonl").write_text(json.dumps({"step": 100, "episode/return_mean100": mean_return}) + "\n")
        return "trained"

    return run
