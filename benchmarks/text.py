"""Next-character prediction at equal updates: STRAW, STRAWe and STRAW-re against an LSTM of
about the same parameter count (Vezhnevets et al. 2016 §4.3; ``run.kind: text``).

``engram bench text`` trains each variant on the same text, for the same number of windows
of the same size, at one or more seeds, and scores the held-out tail in bits per character
(lower is better). For the planners it reports the re-plan rate and the mean length of a
macro-action (the steps between re-plans) on the held-out text: STRAW-re re-plans every
step (no commitment), STRAW at the commitment cost λ of its config and at each
``--commitment-costs`` value. Writes ``text.json``, ``text.png`` (test bits/char against
updates) and prints the table; a finished run is read, not rerun.

    engram bench text [--variants lstm,straw,strawe,straw_re] [--commitment-costs 0.3]
        [--seeds 1] [--updates 1500] [--set KEY=VALUE ...] [--out benchmarks/out/text] [--quick]

The defaults take about an hour on 2 cores; ``--quick`` (60 updates) a couple of minutes.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from benchmarks.sweep import cell, plot_curves, saved_run, spread
from engram.config import Config, load_config

VARIANTS = {
    "lstm": ("configs/text_lstm.yaml", []),
    "straw": ("configs/text_straw.yaml", []),
    "strawe": ("configs/text_straw.yaml", ["agent.core=strawe"]),
    "straw_re": ("configs/text_straw.yaml", ["agent.core=straw_re"]),
}


def train_one(config: Config, path: Path) -> tuple[dict, bool]:
    """One run, or its saved result when ``path`` holds one with the same settings."""

    def train() -> dict:
        from engram.text_prediction import corpus_of, model_of
        from learners.text_trainer import train_text

        torch.manual_seed(config.run.seed)
        corpus = corpus_of(config)
        model = model_of(config, corpus.vocabulary_size)
        chosen = config.text
        result = train_text(
            model, corpus, updates=chosen.updates, batch_size=chosen.batch_size, unroll_length=chosen.unroll_length,
            learning_rate=chosen.learning_rate, aux_costs=config.agent.aux_loss_costs(), seed=config.run.seed,
            evaluate_every=chosen.evaluate_every, evaluate_batch_size=chosen.evaluate_batch_size,
            max_grad_norm=chosen.max_grad_norm,
        )
        return {**result, "core": config.agent.core, "text": corpus.name, "seed": config.run.seed}

    settings = {"agent": config.agent.model_dump(mode="json"), "text": config.text.model_dump()}
    return saved_run(path, settings, train)


def table(results: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for variant, runs in results.items():
        planner = runs[0]["replan_rate"] is not None
        lengths = [r["macro_length_mean"] for r in runs if r["macro_length_mean"] is not None]
        rows.append({
            "variant": variant,
            "core": runs[0]["core"],
            "parameters": runs[0]["parameters"],
            "test_bits_per_character": spread([r["test_bits_per_character"] for r in runs]),
            "best_test_bits_per_character": spread([r["best_test_bits_per_character"] for r in runs]),
            "train_bits_per_character": spread([r["train_bits_per_character"] for r in runs]),
            "replan_rate": spread([r["replan_rate"] for r in runs]) if planner else None,
            "macro_length_mean": spread(lengths) if lengths else None,
            "characters_per_second": spread([r["characters_per_second"] for r in runs])["mean"],
        })
    return rows


def format_table(rows: list[dict], updates: int, seeds: int, text: str) -> str:
    lines = [f"bits per character on the held-out tail of {text} after {updates:,} updates, "
             f"mean ± std over {seeds} seed(s)",
             f"{'variant':<16} {'params':>8} {'test (end)':>15} {'test (best)':>15} {'train':>15} "
             f"{'re-plan rate':>15} {'macro length':>15} {'chars/s':>8}"]
    for row in rows:
        replan = cell(row["replan_rate"]) if row["replan_rate"] else "-"
        length = cell(row["macro_length_mean"]) if row["macro_length_mean"] else "-"
        lines.append(f"{row['variant']:<16} {row['parameters']:>8,} {cell(row['test_bits_per_character']):>15} "
                     f"{cell(row['best_test_bits_per_character']):>15} {cell(row['train_bits_per_character']):>15} "
                     f"{replan:>15} {length:>15} {row['characters_per_second']:>8,.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engram bench text", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--commitment-costs", default="",
                        help="more STRAW variants, one per commitment cost λ, e.g. 0.1,0.3")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="applied to every variant, e.g. text.source=my.txt")
    parser.add_argument("--out", default="benchmarks/out/text")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="60 updates of 20-character windows, 1 seed")
    args = parser.parse_args(argv)
    variants = {}
    for name in (v.strip() for v in args.variants.split(",") if v.strip()):
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; expected some of {', '.join(VARIANTS)}")
        variants[name] = VARIANTS[name]
    for cost in (c.strip() for c in args.commitment_costs.split(",") if c.strip()):
        variants[f"straw λ={cost}"] = ("configs/text_straw.yaml", [f"agent.straw.commitment_cost={cost}"])
    updates, seeds = (60, 1) if args.quick else (args.updates, args.seeds)
    budget = [f"text.updates={updates}"] + (["text.unroll_length=20", "text.evaluate_every=30"] if args.quick else [])
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict[str, list[dict]] = {}
    for seed in range(seeds):  # seed by seed, so a cut-off sweep already has every variant once
        for variant, (config_path, own) in variants.items():
            config = load_config(config_path, [*own, *budget, *args.overrides, f"run.seed={seed}"])
            safe = variant.replace(" ", "_").replace("λ=", "lambda")
            result, fresh = train_one(config, out / "runs" / safe / f"seed{seed}.json")
            results.setdefault(variant, []).append(result)
            replan = "" if result["replan_rate"] is None else f", re-plan rate {result['replan_rate']:.3f}"
            print(f"{variant:<16} seed {seed}: test {result['test_bits_per_character']:.4f} bits/char{replan}, "
                  f"{result['parameters']:,} params, {'trained' if fresh else 'read'}", flush=True)
    rows = table(results)
    text = next(iter(results.values()))[0]["text"]
    report = {
        "settings": {"variants": {name: [path, *own] for name, (path, own) in variants.items()}, "updates": updates,
                     "seeds": seeds, "overrides": args.overrides, "threads": args.threads,
                     "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                     "torch": torch.__version__},
        "table": rows,
        "runs": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "text.json").write_text(json.dumps(report, indent=1))
    plot_curves(results, out / "text.png", metric="test_bits_per_character",
                ylabel="test bits per character (lower is better)",
                title=f"next character of {text}, {updates:,} updates, {seeds} seed(s)")
    print()
    print(format_table(rows, updates, seeds, text))
    print(f"\nwrote {out / 'text.json'} and {out / 'text.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
