"""Learning curves at equal frames: engram configs at several seeds, optionally beside RLlib.

``engram bench learning`` trains each config on each game at each seed for a frame
budget and reads the mean raw score of the last 100 episodes against ALE frames. It
writes ``learning.json`` (settings, every curve, the table), ``learning.png`` (the seeds'
mean per config with their min–max band, each seed as a thin line, a hollow triangle where a
run resumed after an interruption) and prints the table:
mean ± standard deviation over seeds at fixed frame counts. ``--against rllib`` adds RLlib
2.60 IMPALA on the same games, protocol, torso, LSTM, unroll and batch
(:mod:`benchmarks.rllib_impala`), compared at equal frames, not equal time.

A sweep resumes: each run has its own folder under ``--out``; a finished run is read, not
rerun; an interrupted one continues from its newest checkpoint (engram's ``--resume``,
RLlib's algorithm checkpoint); one interrupted before its first checkpoint starts again.
Runs go one at a time, each in its own process, so each has the machine to itself, seed
by seed (every config's seed 0, then every config's seed 1, ...). A run that stops short of
its budget (a diverged update, a crash) does not end the sweep: it counts as far as it got,
``learning.json`` says ``failed`` with the error, and the command exits 1 after the table.
``--reuse`` takes runs already measured in an earlier sweep's ``learning.json`` (same label,
game, seed, config and overrides, run to at least the same budget) instead of training them
again, so a committed result can stand beside a new one: e.g. RLlib trained today beside an
engram run from last week. ``--combine LABEL=learning.json`` (repeatable) trains nothing: it
puts earlier sweeps side by side in one table and plot, each sweep's curves under its label,
so that sweeps with different ``--set`` overrides, or of the same config, can be compared.

    engram bench learning [--config configs/pong_lstm.yaml ...] [--games breakout,pong]
        [--frames 2000000] [--seeds 3] [--against rllib] [--set KEY=VALUE ...]
        [--at 500000,1000000] [--out benchmarks/out/learning] [--reuse earlier/learning.json ...]
    engram bench learning --combine LSTM=a/learning.json --combine STRAW=b/learning.json [--at ...] [--out ...]

Each config trains on its own game unless ``--games`` names others. The defaults
(configs/pong_lstm.yaml on Breakout, 2M frames, 3 seeds, engram only) take about half an hour on 2
cores; with ``--against rllib`` about an hour.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks.sweep import spread as seed_spread
from engram.checkpoint import step_of

RLLIB = "rllib"
FRAMESKIP_RLLIB = 4


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sweep: who (a config's label, or ``rllib``), where, which seed."""

    label: str
    game: str | None  # None: the config's own env (a non-Atari config)
    seed: int
    frames: int
    config: str | None = None  # the YAML path (engram runs)
    overrides: tuple[str, ...] = ()

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.label / (self.game or "env") / f"seed{self.seed}"


@dataclass
class Curve:
    spec: RunSpec
    frames: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)  # frames where an interrupted run continued

    def to_json(self) -> dict:
        """The curve as ``learning.json`` and ``memory.json`` store it: the run's spec, its
        budget, the points' frames (agent steps for non-Atari runs) and returns."""
        return {**asdict(self.spec), "budget": self.spec.frames, "frames": self.frames, "returns": self.returns,
                "resumed_at": self.resumed_at}

    @classmethod
    def from_json(cls, entry: dict) -> Curve:
        """A stored curve, as ``to_json`` writes it or in the older ``memory.json`` layout (the
        points under ``steps``, the budget under ``frames``)."""
        if "steps" in entry:
            points, budget = entry["steps"], entry["frames"]
        else:
            points, budget = entry["frames"], entry.get("budget", 0)
        spec = RunSpec(entry["label"], entry["game"], entry["seed"], int(budget),
                       config=entry.get("config"), overrides=tuple(entry.get("overrides", ())))
        return cls(spec, list(points), list(entry["returns"]), list(entry.get("resumed_at", [])))

    def at(self, frames: int) -> float | None:
        """The curve's value at ``frames``: its last point at or before it; None before its
        first point or past its end. At the run's budget it is the run's final point, which
        lands up to one batch past the budget."""
        if not self.frames or frames < self.frames[0]:
            return None
        if frames == self.spec.frames and self.frames[-1] >= frames:
            return self.returns[int(np.searchsorted(self.frames, frames, side="left"))]
        if frames > self.frames[-1]:
            return None
        index = int(np.searchsorted(self.frames, frames, side="right")) - 1
        return self.returns[index]


# --- engram runs ----------------------------------------------------------------------
def engram_overrides(spec: RunSpec, frames_per_step: int) -> list[str]:
    overrides = [
        *spec.overrides,
        f"run.seed={spec.seed}",
        f"run.total_steps={math.ceil(spec.frames / frames_per_step)}",
        "telemetry.console=false",
    ]
    if spec.game is not None:
        overrides.append(f"env.atari.game={spec.game}")
    return overrides


def _checkpoint_steps(folder: Path) -> int | None:
    steps = [step_of(path) for path in (folder / "checkpoints").glob("ckpt-*.pt")]
    return max(steps) if steps else None


def engram_status(folder: Path, total_steps: int) -> str:
    """``done``, ``partial`` (a checkpoint short of the budget) or ``fresh``."""
    steps = _checkpoint_steps(folder)
    if steps is None:
        return "fresh"
    return "done" if steps >= total_steps else "partial"


def run_engram(spec: RunSpec, out: Path, *, checkpoint_interval_s: float = 120.0) -> str:
    """Train (or finish) one engram run in a child process; returns what was done."""
    from engram.config import load_config

    frames_per_step = load_config(spec.config, list(spec.overrides)).env.frames_per_step
    overrides = [*engram_overrides(spec, frames_per_step), f"checkpoint.interval_s={checkpoint_interval_s}"]
    total_steps = math.ceil(spec.frames / frames_per_step)
    folder = spec.folder(out)
    status = engram_status(folder, total_steps)
    if status == "done":
        return "done"
    if status == "fresh" and folder.exists():
        shutil.rmtree(folder)  # interrupted before its first checkpoint: nothing to keep
    folder.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "engram.cli", "train", spec.config, "--run-dir", str(folder)]
    command += [arg for item in overrides for arg in ("--set", item)]
    if status == "partial":
        command.append("--resume")
    _run_logged(command, folder.with_suffix(".log"))
    if engram_status(folder, total_steps) != "done":
        raise RuntimeError(f"{spec.label} {spec.game} seed {spec.seed} did not reach its budget (see {folder}.log)")
    return "resumed" if status == "partial" else "trained"


def engram_curve(spec: RunSpec, out: Path) -> Curve:
    """(frames, mean return of the last 100 episodes) from the run's metrics.jsonl; where a
    resumed run logged a stretch again, its second telling wins, from the frames of the
    resume's ``run/resumed`` record on; those frames go to ``resumed_at``."""
    from engram.config import load_config

    folder = spec.folder(out)
    if not (folder / "config.yaml").exists():
        return Curve(spec)  # not trained yet (--report-only on a sweep in progress)
    frames_per_step = load_config(folder / "config.yaml").env.frames_per_step
    points: list[tuple[int, float]] = []
    resumes: list[int] = []
    path = folder / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        frames = int(record["step"]) * frames_per_step
        if "run/resumed" in record:  # what the first telling logged past this point is superseded
            resumes = [f for f in resumes if f < frames] + [frames]
            while points and points[-1][0] > frames:
                points.pop()
        if "episode/return_mean100" not in record:
            continue
        while points and points[-1][0] >= frames:
            points.pop()
        points.append((frames, float(record["episode/return_mean100"])))
    return Curve(spec, [f for f, _ in points], [r for _, r in points], resumes)


# --- RLlib runs -----------------------------------------------------------------------
def run_rllib(spec: RunSpec, out: Path) -> str:
    folder = spec.folder(out)
    if (folder / "done").exists():
        return "done"
    resumed = (folder / "progress.json").exists()
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "benchmarks.rllib_impala", "--game", spec.game, "--seed", str(spec.seed),
        "--learn-frames", str(spec.frames), "--run-dir", str(folder),
    ]
    _run_logged(command, folder.with_suffix(".log"))
    if not (folder / "done").exists():
        raise RuntimeError(f"rllib {spec.game} seed {spec.seed} did not reach its budget (see {folder}.log)")
    return "resumed" if resumed else "trained"


def rllib_curve(spec: RunSpec, out: Path) -> Curve:
    curve = Curve(spec)
    path = spec.folder(out) / "curve.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if record.get("resumed"):
            curve.resumed_at.append(int(record["frames"]))
        if record.get("return_mean100") is not None:
            curve.frames.append(int(record["frames"]))
            curve.returns.append(float(record["return_mean100"]))
    return curve


def _run_logged(command: list[str], log_path: Path) -> None:
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... exited with status {status} (see {log_path})")


# --- runs measured in an earlier sweep -------------------------------------------------
def _identity(spec: RunSpec) -> tuple:
    """What makes two runs the same run (the budget aside). The overrides count as the
    settings they leave (the last of a key wins, as in ``engram train``), so their order on
    the command line does not matter, unless one key sets a section that holds another."""
    settings = dict(item.partition("=")[::2] for item in spec.overrides)
    nested = any(inner.startswith(outer + ".") for outer in settings for inner in settings)
    overrides = tuple(spec.overrides) if nested else tuple(sorted(settings.items()))
    return spec.label, spec.game, spec.seed, spec.config, overrides


def reusable_curves(paths: list[Path]) -> dict[tuple, Curve]:
    """The curves of earlier sweeps' ``learning.json`` (or ``engram bench memory``'s
    ``memory.json``) files, by run identity; where a run appears more than once, the telling
    that reached furthest."""
    curves = {}
    for path in paths:
        try:
            stored = json.loads(Path(path).read_text())["curves"]
        except (OSError, ValueError, KeyError) as error:
            raise SystemExit(f"--reuse {path}: not a learning.json or memory.json with curves ({error})") from error
        for entry in stored:
            curve = Curve.from_json(entry)
            known = curves.get(_identity(curve.spec))
            if curve.frames and (known is None or known.frames[-1] < curve.frames[-1]):
                curves[_identity(curve.spec)] = curve
    return curves


def reused_curve(spec: RunSpec, reusable: dict[tuple, Curve]) -> Curve | None:
    """The earlier curve of this very run, if one reached this run's budget, cut at the first
    point at or past the budget (a longer run's tail would not be compared at equal frames)."""
    curve = reusable.get(_identity(spec))
    if curve is None or not curve.frames or curve.frames[-1] < spec.frames:
        return None
    end = int(np.searchsorted(curve.frames, spec.frames, side="left")) + 1
    kept = curve.frames[:end]
    return Curve(spec, kept, curve.returns[:end], [f for f in curve.resumed_at if f <= kept[-1]])


# --- scoring --------------------------------------------------------------------------
def score(curves: list[Curve], at_frames: list[int]) -> list[dict]:
    """One row per (label, game): mean, sample std, min, max and n over seeds at each frame count."""
    rows = []
    for key in sorted({(c.spec.label, c.spec.game or "env") for c in curves}):
        group = [c for c in curves if (c.spec.label, c.spec.game or "env") == key]
        cells = {}
        for frames in at_frames:
            values = [v for v in (c.at(frames) for c in group) if v is not None]
            cells[str(frames)] = (
                {**seed_spread(values), "min": float(min(values)), "max": float(max(values)), "values": values}
                if values else None
            )
        rows.append({"label": key[0], "game": key[1], "seeds": sorted(c.spec.seed for c in group), "at": cells})
    return rows


def format_table(rows: list[dict], at_frames: list[int]) -> str:
    header = f"{'run':26s} {'game':10s} " + " ".join(f"{_frames(f):>17s}" for f in at_frames)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for frames in at_frames:
            cell = row["at"][str(frames)]
            cells.append(f"{cell['mean']:8.2f} ± {cell['std']:4.2f} ({cell['n']})" if cell else f"{'–':>17s}")
        lines.append(f"{display_name(row['label']):26s} {row['game']:10s} " + " ".join(f"{c:>17s}" for c in cells))
    lines.append("mean ± sample std over seeds (n seeds) of the last-100-episode mean raw score, at equal "
                 "ALE frames (agent steps for a game of 'env', a config's own non-Atari environment)")
    return "\n".join(lines)


def display_name(label: str) -> str:
    """How a run's label reads in the table and the plot."""
    return "RLlib 2.60 IMPALA" if label == RLLIB else f"engram {label}"


def _frames(frames: int) -> str:
    return f"{frames / 1e6:g}M frames" if frames >= 1_000_000 else f"{frames / 1e3:g}k frames"


def plot(curves: list[Curve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    games = sorted({c.spec.game or "env" for c in curves})
    figure, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 4.2), squeeze=False)
    for axis, game in zip(axes[0], games):
        labels = sorted({c.spec.label for c in curves if (c.spec.game or "env") == game})
        for colour, label in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], labels):
            group = [c for c in curves if c.spec.label == label and (c.spec.game or "env") == game and c.frames]
            if not group:
                continue
            end = min(c.frames[-1] for c in group)
            start = max(c.frames[0] for c in group)
            grid = np.linspace(start, end, 200) if end > start else np.array([end])
            values = np.array([[c.at(int(f)) for f in grid] for c in group], dtype=float)
            for c in group:
                axis.plot(np.array(c.frames) / 1e6, c.returns, color=colour, alpha=0.25, linewidth=0.8)
                resumes = [f for f in c.resumed_at if c.at(f) is not None]
                axis.plot(np.array(resumes) / 1e6, [c.at(f) for f in resumes], linestyle="none", marker="v",
                          markersize=6, markerfacecolor="none", color=colour)
            axis.fill_between(grid / 1e6, np.nanmin(values, 0), np.nanmax(values, 0), color=colour, alpha=0.15)
            axis.plot(grid / 1e6, np.nanmean(values, 0), color=colour, linewidth=2,
                      label=f"{display_name(label)} ({len(group)} seed{'s' if len(group) > 1 else ''})")
        axis.set_title(game if game != "env" else "each config's own environment")
        axis.set_xlabel("ALE frames (millions)" if game != "env" else "agent steps (millions)")
        axis.set_ylabel("mean raw score, last 100 episodes")
        axis.grid(alpha=0.3)
        if any(c.resumed_at for c in curves if (c.spec.game or "env") == game):
            axis.plot([], [], linestyle="none", marker="v", markerfacecolor="none", color="grey",
                      label="resumed after an interruption")
        axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- the sweep ------------------------------------------------------------------------
def sweep_specs(configs: list[str], games: list[str] | None, seeds: list[int], frames: int,
                overrides: list[str], against_rllib: bool) -> list[RunSpec]:
    from engram.config import load_config

    specs = []
    for path in configs:
        config = load_config(path, overrides)
        label = Path(path).stem
        run_games = (games or [config.env.atari.game]) if config.env.kind == "atari" else [None]
        for game in run_games:
            for seed in seeds:
                specs.append(RunSpec(label, game, seed, frames, config=path, overrides=tuple(overrides)))
    if against_rllib:
        rllib_games = sorted({spec.game for spec in specs if spec.game is not None})
        if not rllib_games:
            raise SystemExit("--against rllib needs an Atari config")
        specs += [RunSpec(RLLIB, game, seed, frames) for game in rllib_games for seed in seeds]
    # Seed by seed, so that a sweep cut short holds the same seeds of every config.
    return sorted(specs, key=lambda spec: spec.seed)


def train_or_read(specs: list[RunSpec], out: Path, *, train: bool = True,
                  reusable: dict[tuple, Curve] | None = None) -> tuple[list[Curve], list[dict]]:
    """Each spec's curve, in order: reused from an earlier sweep, else trained (or finished)
    under ``out`` and read back; and the history of what was done to each, in how long. A run
    that stops short (diverged, crashed) is reported and counts as far as it got; the sweep
    goes on (:func:`say_failures` names them)."""
    out.mkdir(parents=True, exist_ok=True)
    history, curves = [], []
    for spec in specs:
        started = time.monotonic()
        curve = reused_curve(spec, reusable or {})
        failure = None
        if curve is not None:
            did = "reused"
        else:
            try:
                did = (run_rllib(spec, out) if spec.label == RLLIB else run_engram(spec, out)) if train else "read"
            except RuntimeError as error:  # a run that stopped short (diverged, crashed): the sweep goes on
                did, failure = "failed", str(error)
            curve = rllib_curve(spec, out) if spec.label == RLLIB else engram_curve(spec, out)
        curves.append(curve)
        name = "/".join(part for part in (spec.label, spec.game, f"seed{spec.seed}") if part)
        history.append({"run": name, "did": did,
                        "seconds": time.monotonic() - started, **({"error": failure} if failure else {})})
        print(f"[{len(history)}/{len(specs)}] {history[-1]['run']}: {did} ({history[-1]['seconds']:.0f} s)"
              + (f": {failure}" if failure else ""), flush=True)
    return curves, history


def failed_runs(history: list[dict]) -> list[str]:
    """The runs of a sweep's history that stopped short of their budget."""
    return [run["run"] for run in history if run["did"] == "failed"]


def say_failures(history: list[dict]) -> None:
    """Name the runs that stopped short, if any (printed after the table)."""
    failed = failed_runs(history)
    if failed:
        print(f"{len(failed)} run(s) stopped short of the budget and count only as far as they got: "
              f"{', '.join(failed)}; rerun the same command to try them again", flush=True)


def run_sweep(specs: list[RunSpec], out: Path, at_frames: list[int], *, train: bool = True,
              reusable: dict[tuple, Curve] | None = None) -> dict:
    curves, history = train_or_read(specs, out, train=train, reusable=reusable)
    result = write_report(curves, out, at_frames, runs=history)
    say_failures(history)
    return result


def write_report(curves: list[Curve], out: Path, at_frames: list[int], **extra) -> dict:
    """Score the curves, write ``learning.json`` and ``learning.png`` under ``out``, print the table."""
    out.mkdir(parents=True, exist_ok=True)
    rows = score(curves, at_frames)
    result = {
        "benchmark": "learning",
        "at_frames": at_frames,
        "table": rows,
        "curves": [c.to_json() for c in curves],
        **extra,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    (out / "learning.json").write_text(json.dumps(result, indent=1))
    plot(curves, out / "learning.png")
    print(format_table(rows, at_frames))
    print(f"wrote {out / 'learning.json'} and {out / 'learning.png'}")
    return result


def combined_curves(sources: list[tuple[str, Path]]) -> list[Curve]:
    """Every curve of each earlier sweep's ``learning.json``, under that source's label: sweeps
    with different ``--set`` overrides, or of the same config, side by side in one table."""
    labels = [label for label, _ in sources]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"--combine: each source needs its own label, got {labels}")
    curves = []
    for label, path in sources:
        found = reusable_curves([path]).values()
        if not found:
            raise SystemExit(f"--combine {label}={path}: the file holds no curves")
        curves += [replace(c, spec=replace(c.spec, label=label)) for c in found]
    return curves


def recorded_at_frames(label: str, path: Path) -> list[int]:
    """The frame counts an earlier sweep's table was scored at: --combine's default for --at."""
    try:
        return [int(frames) for frames in json.loads(Path(path).read_text())["at_frames"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"--combine {label}={path}: it records no at_frames ({error!r}); give --at") from error


def _source(text: str) -> tuple[str, Path]:
    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=learning.json, got {text!r}")
    return label, Path(path)


def requested_games(games: str | None, *, configs_given: bool) -> list[str] | None:
    """The games of ``--games``; None (each config's own game) when it is not given with a
    ``--config``, Breakout when neither is given (the default config is Pong's)."""
    if games is None:
        return None if configs_given else ["breakout"]
    return [g.strip() for g in games.split(",") if g.strip()] or None


def _ints(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram bench learning", description=__doc__.splitlines()[0])
    parser.add_argument("--config", dest="configs", action="append", default=None, metavar="YAML",
                        help="a config to train (repeatable; default configs/pong_lstm.yaml)")
    parser.add_argument("--games", default=None,
                        help="comma-separated Atari games (default: each config's own; Breakout without --config)")
    parser.add_argument("--frames", type=lambda t: int(float(t)), default=2_000_000, help="ALE frames per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N−1 per config and game")
    parser.add_argument("--against", choices=[RLLIB], default=None, help="also train RLlib IMPALA on the same games")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every engram config, as for engram train (repeatable)")
    parser.add_argument("--at", type=_ints, default=None, help="frame counts of the table (default: 4 even steps)")
    parser.add_argument("--out", default="benchmarks/out/learning", help="the sweep's folder (runs, JSON, PNG)")
    parser.add_argument("--report-only", action="store_true", help="read the runs already in --out; train nothing")
    parser.add_argument("--reuse", action="append", default=[], metavar="JSON",
                        help="an earlier sweep's learning.json: its runs that match are read from it, not trained "
                             "(repeatable)")
    parser.add_argument("--combine", action="append", default=[], type=_source, metavar="LABEL=JSON",
                        help="put earlier sweeps' learning.json side by side, each under its LABEL, in one table "
                             "and plot in --out; trains nothing (repeatable)")
    args = parser.parse_args(argv)
    if args.combine:
        if args.configs or args.against or args.overrides or args.reuse or args.report_only:
            parser.error("--combine only reads earlier sweeps: it takes --at and --out, nothing that trains")
        curves = combined_curves(args.combine)
        at_frames = args.at or recorded_at_frames(*args.combine[0])
        write_report(curves, Path(args.out), at_frames, sources={label: str(path) for label, path in args.combine})
        return 0
    configs = args.configs or ["configs/pong_lstm.yaml"]
    games = requested_games(args.games, configs_given=bool(args.configs))
    at_frames = args.at or [args.frames * k // 4 for k in (1, 2, 3, 4)]
    specs = sweep_specs(configs, games, list(range(args.seeds)), args.frames, args.overrides, args.against == RLLIB)
    result = run_sweep(specs, Path(args.out), at_frames, train=not args.report_only,
                       reusable=reusable_curves([Path(path) for path in args.reuse]))
    return 1 if failed_runs(result["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
