"""Memory suites at equal steps: engram's cores on POPGym and on bsuite's memory_len.

``engram bench memory popgym`` trains each core on each POPGym environment at several seeds
for a step budget and scores each run by POPGym's own metric, MMER: the maximum over
training of the mean episode return (Morad et al. 2023, §4; POPGym's rewards are scaled so
that an episode's return lies in [−1, 1]). Our "epoch" is a telemetry record: the mean of
the last 100 episodes at that point. The table gives mean ± sample standard deviation over seeds.

``engram bench memory memory_len`` trains each core on bsuite's MemoryChain for each memory
length N, once with an unroll that covers the whole episode (N + 1 steps, backpropagated
through a checkpointed plan when ``--bptt-budget`` is given) and once with a 20-step unroll
(RLlib's and Sample Factory's default), and scores the share of episodes solved at the end
of the budget: (return + 1) / 2, the reward being +1 for the right bit and −1 for the wrong.

Both write ``memory.json``, ``memory.png`` and print the table; runs resume like
``engram bench learning`` (one folder per run under ``--out``), and ``--reuse`` reads the runs
of an earlier ``memory.json`` instead of training them again. As there, a run that stops short
does not end the sweep: ``memory.json``'s ``runs`` says ``failed`` with the error, and the
command exits 1 after the table.

    engram bench memory popgym [--envs RepeatPreviousMedium,AutoencodeMedium] [--cores lstm,sam]
        [--steps 1000000] [--seeds 3] [--set KEY=VALUE ...] [--out benchmarks/out/memory_popgym]
    engram bench memory memory_len [--lengths 10,30,100] [--cores lstm,sam] [--steps 500000]
        [--seeds 3] [--short-unroll 20] [--bptt-budget 64MiB[,N:SIZE ...]] [--out benchmarks/out/memory_len]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from benchmarks.learning import Curve, RunSpec, failed_runs, reusable_curves, say_failures, train_or_read
from benchmarks.sweep import spread as seed_spread

POPGYM_CONFIG = "configs/popgym_lstm.yaml"
MEMORY_LEN_CONFIG = "configs/bsuite_memory_lstm.yaml"


# --- scoring --------------------------------------------------------------------------
def mmer(curve: Curve) -> float | None:
    """POPGym's MMER of one run: the best mean episode return seen during training."""
    return max(curve.returns) if curve.returns else None


def solved_share(curve: Curve) -> float | None:
    """Share of memory_len episodes solved at the end of the run (returns are +1 or −1)."""
    return (curve.returns[-1] + 1.0) / 2.0 if curve.returns else None


def spread(values: list[float | None]) -> dict | None:
    """Mean, sample standard deviation and count over the seeds that have a value."""
    values = [v for v in values if v is not None]
    return {**seed_spread(values), "values": values} if values else None


def _cell(cell: dict | None) -> str:
    return f"{cell['mean']:6.3f} ± {cell['std']:5.3f} ({cell['n']})" if cell else f"{'–':>20s}"


# --- POPGym ---------------------------------------------------------------------------
def popgym_specs(envs: list[str], cores: list[str], seeds: list[int], steps: int, overrides: list[str]) -> list[RunSpec]:
    specs = [
        RunSpec(f"{env}/{core}", None, seed, steps, config=POPGYM_CONFIG,
                overrides=(*overrides, f"env.popgym.id={env}", f"agent.core={core}"))
        for seed in seeds for env in envs for core in cores
    ]
    return specs


def popgym_table(curves: list[Curve]) -> list[dict]:
    rows = []
    for label in sorted({c.spec.label for c in curves}):
        env, core = label.split("/")
        group = [c for c in curves if c.spec.label == label]
        rows.append({"env": env, "core": core, "mmer": spread([mmer(c) for c in group]),
                     "seeds": sorted(c.spec.seed for c in group)})
    return rows


def format_popgym(rows: list[dict]) -> str:
    lines = [f"{'environment':28s} {'core':8s} {'MMER':>20s}", "-" * 58]
    lines += [f"{r['env']:28s} {r['core']:8s} {_cell(r['mmer'])}" for r in rows]
    lines.append("MMER: max over training of the last-100-episode mean return (POPGym's scale, −1 … 1); "
                 "mean ± sample std over seeds (n)")
    return "\n".join(lines)


# --- memory_len -----------------------------------------------------------------------
def memory_len_specs(lengths: list[int], cores: list[str], seeds: list[int], steps: int, overrides: list[str],
                     short_unroll: int, bptt_budget: str | None) -> list[RunSpec]:
    budgets = budgets_by_length(bptt_budget)
    specs = []
    for seed in seeds:
        for length in lengths:
            for core in cores:
                base = (*overrides, f"env.bsuite_memory.memory_length={length}", f"agent.core={core}")
                long_unroll = [f"learner.unroll_length={length + 1}"]
                budget = budgets.get(length, budgets.get(None))
                if budget:
                    long_unroll += ["learner.bptt.mode=msm", f"learner.bptt.memory_budget={budget}"]
                specs.append(RunSpec(f"N{length}/{core}/whole-episode", None, seed, steps, config=MEMORY_LEN_CONFIG,
                                     overrides=(*base, *long_unroll)))
                if short_unroll < length + 1:
                    specs.append(RunSpec(f"N{length}/{core}/unroll{short_unroll}", None, seed, steps,
                                         config=MEMORY_LEN_CONFIG,
                                         overrides=(*base, f"learner.unroll_length={short_unroll}")))
    return specs


def budgets_by_length(text: str | None) -> dict[int | None, str]:
    """``--bptt-budget``'s value by memory length: ``64MiB`` for every N, or with exceptions,
    ``64MiB,300:256MiB,1000:512MiB``. The state a whole-episode unroll must journal grows
    with N, so one budget rarely fits every N (``engram plan`` prints a config's minimum)."""
    budgets: dict[int | None, str] = {}
    for item in _items(text or ""):
        length, _, budget = item.rpartition(":")
        try:
            budgets[int(length) if length else None] = budget
        except ValueError:
            raise SystemExit(f"--bptt-budget: {item!r} is neither a size such as 64MiB nor N:size such as "
                             "1000:512MiB") from None
    return budgets


def memory_len_table(curves: list[Curve]) -> list[dict]:
    rows: dict[tuple[str, str], dict] = {}
    for label in sorted({c.spec.label for c in curves}):
        length, core, unroll = label.split("/")
        group = [c for c in curves if c.spec.label == label]
        row = rows.setdefault((core, unroll), {"core": core, "unroll": unroll, "settings": {}, "solved": {}})
        row["solved"][length[1:]] = spread([solved_share(c) for c in group])
        row["settings"][length[1:]] = unroll_settings(group[0].spec)
    return sorted(rows.values(), key=lambda row: (row["core"], row["unroll"] != "whole-episode"))


def unroll_settings(spec: RunSpec) -> str:
    """The unroll and the BPTT a run trained with, read from its resolved config."""
    from engram.config import load_config

    learner = load_config(spec.config or MEMORY_LEN_CONFIG, list(spec.overrides)).learner
    budget = f" within {learner.bptt.memory_budget}" if learner.bptt.mode != "full" else ""
    return f"unroll {learner.unroll_length}, {learner.bptt.mode} BPTT{budget}"


def format_memory_len(rows: list[dict], lengths: list[int]) -> str:
    header = f"{'core':8s} {'unroll':14s} " + " ".join(f"{'N=' + str(n):>20s}" for n in lengths)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['core']:8s} {row['unroll']:14s} "
                     + " ".join(_cell(row["solved"].get(str(n))) for n in lengths))
    lines.append("share of episodes solved at the end of the budget, (return + 1) / 2 over the last 100; "
                 "mean ± sample std over seeds (n)")
    for unroll in sorted({row["unroll"] for row in rows}):
        settings = {n: text for row in rows if row["unroll"] == unroll for n, text in row["settings"].items()}
        lines.append(f"{unroll}: " + "; ".join(f"N={n}: {settings[str(n)]}" for n in lengths if str(n) in settings))
    return "\n".join(lines)


# --- the plot -------------------------------------------------------------------------
def plot(curves: list[Curve], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = sorted({c.spec.label.split("/")[0] for c in curves}, key=_panel_order)
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    cores = sorted({c.spec.label.split("/")[1] for c in curves})
    colour_of = {core: colours[i % len(colours)] for i, core in enumerate(cores)}
    for axis, panel in zip(axes[0], panels):
        labels = sorted({c.spec.label for c in curves if c.spec.label.split("/")[0] == panel})
        for label in labels:
            _, core, *unroll = label.split("/")
            style = "--" if unroll and unroll[0] != "whole-episode" else "-"  # memory_len's short unroll
            for i, c in enumerate(c for c in curves if c.spec.label == label and c.frames):
                axis.plot(np.array(c.frames) / 1e6, c.returns, color=colour_of[core], linestyle=style, alpha=0.8,
                          linewidth=1, label=label[len(panel) + 1:] if i == 0 else None)
        axis.set_title(f"memory_len, N = {panel[1:]}" if title == "memory_len" else panel)
        axis.set_xlabel("agent steps (millions)")
        axis.set_ylabel("mean episode return, last 100")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[1]:
            axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- the sweep ------------------------------------------------------------------------
def run_sweep(suite: str, specs: list[RunSpec], out: Path, *, train: bool, lengths: list[int] = (),
              reusable: dict[tuple, Curve] | None = None) -> dict:
    curves, history = train_or_read(specs, out, train=train, reusable=reusable)
    if suite == "popgym":
        rows = popgym_table(curves)
        text = format_popgym(rows)
    else:
        rows = memory_len_table(curves)
        text = format_memory_len(rows, list(lengths))
    result = {
        "benchmark": f"memory/{suite}",
        "table": rows,
        "curves": [c.to_json() for c in curves],
        "runs": history,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    (out / "memory.json").write_text(json.dumps(result, indent=1))
    plot(curves, out / "memory.png", suite)
    print(text)
    print(f"wrote {out / 'memory.json'} and {out / 'memory.png'}")
    say_failures(history)
    return result


def _panel_order(panel: str) -> tuple:
    """memory_len's panels (N10, N30, …) by N; POPGym's by name."""
    return (0, int(panel[1:]), "") if panel[0] == "N" and panel[1:].isdigit() else (1, 0, panel)


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram bench memory", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["popgym", "memory_len"])
    parser.add_argument("--envs", default="RepeatPreviousMedium,AutoencodeMedium", help="POPGym environments")
    parser.add_argument("--lengths", default="10,30,100", help="memory_len values of N")
    parser.add_argument("--cores", default="lstm,sam", help="comma-separated agent.core values")
    parser.add_argument("--steps", type=lambda t: int(float(t)), default=None,
                        help="agent steps per run (default 1M for popgym, 500k for memory_len)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--short-unroll", type=int, default=20, help="memory_len: the short unroll compared")
    parser.add_argument("--bptt-budget", default=None,
                        help="memory_len: msm budget of the whole-episode unroll, for every N (64MiB) or with "
                             "exceptions by N (64MiB,1000:512MiB)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="the sweep's folder (default benchmarks/out/memory_<suite>)")
    parser.add_argument("--report-only", action="store_true", help="read the runs already in --out; train nothing")
    parser.add_argument("--reuse", action="append", default=[], metavar="JSON",
                        help="an earlier sweep's memory.json: its runs with the same settings and seed that "
                             "reached the budget are read from it, not trained (repeatable)")
    args = parser.parse_args(argv)
    seeds, cores = list(range(args.seeds)), _items(args.cores)
    out = Path(args.out or f"benchmarks/out/memory_{args.suite}")
    reusable = reusable_curves([Path(path) for path in args.reuse])
    if args.suite == "popgym":
        specs = popgym_specs(_items(args.envs), cores, seeds, args.steps or 1_000_000, args.overrides)
        result = run_sweep("popgym", specs, out, train=not args.report_only, reusable=reusable)
    else:
        lengths = [int(n) for n in _items(args.lengths)]
        specs = memory_len_specs(lengths, cores, seeds, args.steps or 500_000, args.overrides,
                                 args.short_unroll, args.bptt_budget)
        result = run_sweep("memory_len", specs, out, train=not args.report_only, lengths=lengths, reusable=reusable)
    return 1 if failed_runs(result["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
