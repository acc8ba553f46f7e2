"""Lag recall: can a core name the symbol it saw k steps ago? SAM with and without a step
code (agents/sam/step_code.py) against the LSTM, with the RL noise taken out or put back.

The task is POPGym's Repeat Previous stripped to its memory demand: a sequence of T random
symbols from an alphabet of 4; from step k on, the answer at step t is the symbol of step
t − k. Every sequence starts with a fresh core state, so the whole span lies inside one
unroll and the gradient reaches every write. Two ways to train the same agent (an MLP torso,
the core, a linear head over the answers):

- ``supervised``: cross-entropy against the answer, the easiest signal a core can get;
- ``reinforce``: sample an answer, reward ±1, advantage = the reward normalised over the
  batch, plus an entropy bonus: an immediate-reward policy gradient, the signal an RL agent
  on Repeat Previous gets with discount 0.

The score is the share of answers right by the head's argmax, averaged over the last 10%
of updates (chance: 0.25). It prints a table, writes JSON and draws accuracy against updates.

    python -m benchmarks.lag_recall [--lag 32] [--length 64] [--updates 1000]
        [--modes supervised,reinforce] [--cores lstm,sam,sam+code] [--seeds 1] [--batch-size 32]
        [--json PATH] [--png PATH]
    (or engram bench lag_recall ...)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from agents.registry import core_factory

SYMBOLS, TORSO = 4, 64
SAM_OPTIONS = {"hidden_size": 128, "memory_slots": 128, "word_size": 32, "num_heads": 4, "top_k": 4, "index": "exact"}
CORES = {
    "lstm": ("lstm", {"hidden_size": 128}),
    "sam": ("sam", SAM_OPTIONS),
    "sam+code": ("sam", {**SAM_OPTIONS, "time_code": 16}),
}


class LagAgent(nn.Module):
    def __init__(self, core: str):
        super().__init__()
        kind, options = CORES[core]
        self.torso = nn.Sequential(nn.Linear(SYMBOLS, TORSO), nn.ReLU())
        self.core = core_factory(kind, SYMBOLS, options)(TORSO)
        self.head = nn.Linear(self.core.output_size, SYMBOLS)

    def forward(self, symbols: torch.Tensor) -> torch.Tensor:
        """Answer logits ``[T, B, SYMBOLS]`` for ``symbols`` ``[T, B]``, from a fresh state."""
        features = self.torso(F.one_hot(symbols, SYMBOLS).float())
        state = self.core.initial_state(symbols.shape[1])
        logits = []
        for step in features:
            out, state = self.core(step, state)
            logits.append(self.head(out.features))
        return torch.stack(logits)


def loss_and_accuracy(logits, answers, mode: str, entropy_cost: float):
    if mode == "supervised":
        loss = F.cross_entropy(logits.reshape(-1, SYMBOLS), answers.reshape(-1))
    else:
        policy = torch.distributions.Categorical(logits=logits)
        choices = policy.sample()
        reward = (choices == answers).float() * 2 - 1
        advantage = (reward - reward.mean()) / (reward.std() + 1e-8)
        loss = -(policy.log_prob(choices) * advantage).mean() - entropy_cost * policy.entropy().mean()
    accuracy = (logits.argmax(-1) == answers).float().mean().item()
    return loss, accuracy


def train(core: str, mode: str, seed: int, args) -> list[float]:
    torch.manual_seed(seed)
    agent = LagAgent(core)
    optimiser = torch.optim.Adam(agent.parameters(), lr=args.learning_rate)
    generator = torch.Generator().manual_seed(1000 + seed)
    accuracies = []
    for _ in range(args.updates):
        symbols = torch.randint(0, SYMBOLS, (args.length, args.batch_size), generator=generator)
        logits = agent(symbols)[args.lag:]
        loss, accuracy = loss_and_accuracy(logits, symbols[: -args.lag], mode, args.entropy_cost)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), 40.0)
        optimiser.step()
        accuracies.append(accuracy)
    return accuracies


def final_score(accuracies: list[float]) -> float:
    tail = accuracies[-max(1, len(accuracies) // 10):]
    return sum(tail) / len(tail)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lag", type=int, default=32)
    parser.add_argument("--length", type=int, default=64, help="T, steps per sequence")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--modes", default="supervised,reinforce")
    parser.add_argument("--cores", default="lstm,sam,sam+code", help=f"of {', '.join(CORES)}")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per update")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--entropy-cost", type=float, default=0.05, help="reinforce only")
    parser.add_argument("--json", default="benchmarks/out/lag_recall.json")
    parser.add_argument("--png", default="benchmarks/out/lag_recall.png")
    args = parser.parse_args(argv)
    if not 0 < args.lag < args.length:
        parser.error(f"--lag must lie between 0 and --length ({args.length}), got {args.lag}")
    if args.batch_size < 2:
        parser.error(f"--batch-size must be at least 2 (reinforce normalises over the batch), got {args.batch_size}")
    cores, modes = args.cores.split(","), args.modes.split(",")
    for name in cores:
        if name not in CORES:
            parser.error(f"unknown core {name!r}; choose from {', '.join(CORES)}")
    for mode in modes:
        if mode not in ("supervised", "reinforce"):
            parser.error(f"unknown mode {mode!r}; choose supervised or reinforce")

    runs = []
    for mode in modes:
        for core in cores:
            for seed in range(args.seeds):
                start = time.perf_counter()
                curve = train(core, mode, seed, args)
                runs.append({"mode": mode, "core": core, "seed": seed, "score": final_score(curve),
                             "accuracy": curve, "seconds": time.perf_counter() - start})
                print(f"{mode:10s} {core:9s} seed {seed}: {runs[-1]['score']:.3f} "
                      f"({runs[-1]['seconds']:.0f} s)", flush=True)

    print(f"\nlag {args.lag}, {args.length} steps, {args.updates} updates of {args.batch_size} sequences; "
          "share right over the last 10% of updates (chance 0.25)")
    print(f"{'core':10s}" + "".join(f"{mode:>22s}" for mode in modes))
    for core in cores:
        cells = []
        for mode in modes:
            scores = torch.tensor([r["score"] for r in runs if r["core"] == core and r["mode"] == mode])
            spread = f" ± {scores.std(unbiased=False):.3f}" if len(scores) > 1 else ""
            cells.append(f"{scores.mean():.3f}{spread} ({len(scores)})")
        print(f"{core:10s}" + "".join(f"{cell:>22s}" for cell in cells))

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"settings": vars(args), "runs": runs}, indent=1))
    _plot(runs, modes, args)
    print(f"wrote {args.json} and {args.png}")
    return 0


def _plot(runs, modes, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    for axis, mode in zip(axes[0], modes):
        for index, core in enumerate(dict.fromkeys(r["core"] for r in runs)):
            for run in (r for r in runs if r["mode"] == mode and r["core"] == core):
                window = 20
                curve = torch.tensor(run["accuracy"])
                smooth = curve.unfold(0, window, 1).mean(1) if len(curve) >= window else curve
                axis.plot(smooth.numpy(), color=f"C{index}", label=core if run["seed"] == 0 else None)
        axis.axhline(1 / SYMBOLS, color="grey", linestyle=":", label="chance")
        axis.set(title=f"{mode}, lag {args.lag}", xlabel="update", ylabel="share right", ylim=(0, 1))
        axis.legend()
    figure.tight_layout()
    figure.savefig(args.png, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
