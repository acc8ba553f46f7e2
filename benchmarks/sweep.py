"""What the one-process benchmarks (``engram bench density``, ``engram bench text``) share:
a run's result saved once and read back, the seeds' spread, and the plot of a held-out
score against updates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np


def saved_run(path: Path, settings: dict, train: Callable[[], dict]) -> tuple[dict, bool]:
    """``(result, trained)``: the result saved at ``path`` if its ``settings`` are these,
    else ``train()``'s, saved there (atomically: a run cut off mid-write is rerun)."""
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("settings") != settings:
            raise SystemExit(f"{path} holds a run with other settings than asked "
                             f"({saved.get('settings')} against {settings}); use another --out")
        return saved, False
    result = {**train(), "settings": settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".part")
    temporary.write_text(json.dumps(result, indent=1))
    temporary.replace(path)
    return result, True


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation and count over seeds."""
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0, "n": len(array)}


def cell(value: dict) -> str:
    return f"{value['mean']:.3f} ± {value['std']:.3f}" if value["n"] > 1 else f"{value['mean']:.3f}"


def plot_curves(results: dict[str, list[dict]], path: Path, *, metric: str, ylabel: str, title: str,
                xlabel: str = "Adam updates") -> None:
    """Each variant's seeds as thin lines around their mean, ``metric`` of each ``curve`` point."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (variant, runs) in zip(colours, results.items()):
        updates = [point["update"] for point in runs[0]["curve"]]
        curves = np.array([[point[metric] for point in run["curve"]] for run in runs])
        for curve in curves:
            axis.plot(updates, curve, color=colour, alpha=0.35, linewidth=0.8)
        axis.plot(updates, curves.mean(axis=0), color=colour, linewidth=2, marker="o", markersize=3,
                  label=f"{variant} ({runs[0]['parameters'] / 1e3:.0f}k params)")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    ends = [run["curve"][-1][metric] for runs in results.values() for run in runs]
    axis.set_ylim(min(ends) - 0.1, max(ends) + 0.6)  # the early, steep part would flatten the differences
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
