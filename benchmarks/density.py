"""Density models of images at equal updates: the Gated PixelCNN's three uses, and the plain
PixelCNN that gating improves on (van den Oord et al. 2016, 1606.05328).

``engram bench density`` trains each variant on the same split of scikit-learn's 8×8 digits,
for the same number of Adam updates, batch and learning rate, at several seeds:

* ``plain``: the original ungated PixelCNN with its blind spot (PixelRNN §3.5), p(x);
* ``plain_wide``: the same, widened until it has as many parameters as ``gated``;
* ``gated``: the Gated PixelCNN (two stacks, gated units), p(x);
* ``class``: the gated model given the class one-hot in every gate, p(x | class) (§2.3);
* ``autoencoder``: the gated model as decoder of a convolutional encoder, p(x | f(x)) (§3.4).

It scores the held-out images in bits per dimension (lower is better) at the end of the
budget and at the best evaluation, overall and per class, and writes ``density.json``, a
plot ``density.png`` (test bits/dim against updates, each variant's seeds as thin lines
around their mean) and prints the table, mean ± standard deviation over seeds. Each run's
result is its own file under ``--out``; a finished run is read, not rerun.

    engram bench density [--variants plain,plain_wide,gated,class,autoencoder] [--seeds 3]
        [--updates 2000] [--config configs/digits_pixelcnn_class.yaml] [--set KEY=VALUE ...]
        [--out benchmarks/out/density] [--quick]

The defaults take about an hour on 2 cores; ``--quick`` (200 updates, 1 seed) a couple.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from benchmarks.sweep import cell, plot_curves, saved_run, spread
from engram.config import Config, load_config

DEFAULT_CONFIG = "configs/digits_pixelcnn_class.yaml"
VARIANTS = {
    "plain": ["density.model=plain", "density.conditioning=none"],
    "plain_wide": ["density.model=plain", "density.conditioning=none"],  # width set to match `gated`
    "gated": ["density.model=gated", "density.conditioning=none"],
    "class": ["density.model=gated", "density.conditioning=class"],
    "autoencoder": ["density.model=gated", "density.conditioning=autoencoder"],
}


def matched_width(plain: Config, gated: Config) -> int:
    """The plain model's hidden width whose parameter count is closest to the gated model's
    (the image set is read once; only the models are built for each width)."""
    from engram.density import density_model_of, image_set_of

    data = image_set_of(plain)

    def parameters(config: Config) -> int:
        return sum(p.numel() for p in density_model_of(config, data).parameters())

    def at_width(width: int) -> Config:
        return plain.model_copy(update={"density": plain.density.model_copy(update={"hidden_channels": width})})

    target = parameters(gated)
    return min(range(plain.density.hidden_channels, 4 * plain.density.hidden_channels + 1),
               key=lambda width: abs(parameters(at_width(width)) - target))


def variant_config(base: str, variant: str, overrides: list[str], seed: int) -> Config:
    """The base config with the user's overrides, then the variant's, then the seed."""
    settings = [*overrides, *VARIANTS[variant], f"run.seed={seed}"]
    config = load_config(base, settings)
    if variant == "plain_wide":
        width = matched_width(config, load_config(base, [*overrides, *VARIANTS["gated"]]))
        config = load_config(base, [*settings, f"density.hidden_channels={width}"])
    return config


def train_one(config: Config, path: Path) -> tuple[dict, bool]:
    """One run, or its saved result when ``path`` holds one with the same settings."""

    def train() -> dict:
        from engram.density import density_model_of, image_set_of
        from learners.density_trainer import train_density

        torch.manual_seed(config.run.seed)
        data = image_set_of(config)
        density = density_model_of(config, data)
        chosen = config.density
        result = train_density(density, data, updates=chosen.updates, batch_size=chosen.batch_size,
                               learning_rate=chosen.learning_rate, seed=config.run.seed,
                               evaluate_every=chosen.evaluate_every)
        return {**result, "model": chosen.model, "conditioning": chosen.conditioning,
                "hidden_channels": chosen.hidden_channels, "layers": chosen.layers, "levels": data.levels,
                "seed": config.run.seed}

    return saved_run(path, config.density.model_dump(), train)


def table(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for variant, runs in results.items():
        rows.append({
            "variant": variant,
            "model": runs[0]["model"],
            "conditioning": runs[0]["conditioning"],
            "hidden_channels": runs[0]["hidden_channels"],
            "parameters": runs[0]["parameters"],
            "test_bits_per_dim": spread([r["test_bits_per_dim"] for r in runs]),
            "best_test_bits_per_dim": spread([r["best_test_bits_per_dim"] for r in runs]),
            "train_bits_per_dim": spread([r["train_bits_per_dim"] for r in runs]),
            "per_class": [spread([r["per_class"][k] for r in runs])["mean"] for k in range(len(runs[0]["per_class"]))],
            "seconds_per_update": spread([r["seconds"] / r["updates"] for r in runs])["mean"],
        })
    return rows


def format_table(rows: list[dict], updates: int, seeds: int) -> str:
    lines = [f"test bits/dim on held-out digits after {updates:,} updates, mean ± std over {seeds} seed(s)",
             f"{'variant':<12} {'model':<6} {'cond.':<12} {'width':>5} {'params':>8} {'test (end)':>15} "
             f"{'test (best)':>15} {'train':>15} {'s/update':>9}"]
    for row in rows:
        lines.append(f"{row['variant']:<12} {row['model']:<6} {row['conditioning']:<12} {row['hidden_channels']:>5} "
                     f"{row['parameters']:>8,} {cell(row['test_bits_per_dim']):>15} "
                     f"{cell(row['best_test_bits_per_dim']):>15} {cell(row['train_bits_per_dim']):>15} "
                     f"{row['seconds_per_update']:>9.3f}")
    lines.append("")
    lines.append("per class (end, mean over seeds): " + " ".join(f"{k:>6}" for k in range(len(rows[0]["per_class"]))))
    for row in rows:
        lines.append(f"{row['variant']:<33} " + " ".join(f"{v:>6.3f}" for v in row["per_class"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram bench density", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="the base density config (sizes, data, optimiser)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="benchmarks/out/density")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="200 updates, 1 seed")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; expected some of {', '.join(VARIANTS)}")
    updates, seeds = (200, 1) if args.quick else (args.updates, args.seeds)
    budget = [f"density.updates={updates}", f"density.evaluate_every={50 if args.quick else 100}"]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict[str, list[dict]] = {}
    for seed in range(seeds):  # seed by seed, so a cut-off sweep already has every variant once
        for variant in variants:
            config = variant_config(args.config, variant, [*budget, *args.overrides], seed)
            path = out / "runs" / variant / f"seed{seed}.json"
            result, fresh = train_one(config, path)
            results.setdefault(variant, []).append(result)
            print(f"{variant:<12} seed {seed}: test {result['test_bits_per_dim']:.4f} bits/dim "
                  f"(best {result['best_test_bits_per_dim']:.4f} at {result['best_update']}), "
                  f"{result['parameters']:,} params, {'trained' if fresh else 'read'}", flush=True)
    results = {v: results[v] for v in variants}
    rows = table(results)
    base = load_config(args.config, args.overrides)
    title = (f"{base.density.dataset} at {results[variants[0]][0]['levels']} levels, "
             f"{base.density.layers} layers, {updates:,} updates of batch {base.density.batch_size}, {seeds} seed(s)")
    report = {
        "settings": {"config": args.config, "overrides": args.overrides, "variants": variants, "updates": updates,
                     "seeds": seeds, "threads": args.threads, "machine": platform.processor() or platform.machine(),
                     "torch": torch.__version__},
        "table": rows,
        "runs": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "density.json").write_text(json.dumps(report, indent=1))
    plot_curves(results, out / "density.png", metric="test_bits_per_dim", ylabel="test bits/dim (lower is better)",
                title=title)
    print()
    print(format_table(rows, updates, seeds))
    print(f"\nwrote {out / 'density.json'} and {out / 'density.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
