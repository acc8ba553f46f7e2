"""`engram train` and `engram eval` for ``run.kind: text``: ``agent.core`` learns to predict
the next character of a text on one process (no Ray), with the run folder, telemetry and
checkpoint layout of the other run kinds.

TensorBoard gets ``text/train_bits_per_character`` and ``text/test_bits_per_character`` at
each evaluation and, for STRAW, ``straw/replan_rate`` and ``straw/macro_action_length_mean``
on the held-out text with the histogram ``straw/macro_action_length``.
``text_result.json`` holds the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from agents.core_names import STRAW_VARIANTS
from agents.registry import core_factory
from engram.checkpoint import Checkpointer, CheckpointError
from engram.checkpoint_payload import model_payload
from engram.config import Config, ConfigError
from engram.telemetry import Telemetry
from envs.text_corpus import TextCorpus, TextError, load_text
from learners.text_trainer import CharPredictor, evaluate_text, train_text

RESULT_FILE = "text_result.json"


def corpus_of(config: Config) -> TextCorpus:
    """The config's text; :class:`ConfigError` naming the problem if it cannot be used."""
    try:
        return load_text(config.text.source, test_fraction=config.text.test_fraction)
    except TextError as error:
        raise ConfigError(f"text.source: {error}") from None


def model_of(config: Config, vocabulary_size: int) -> CharPredictor:
    """``agent.core`` over one-hot characters; STRAW predicts from its plan (one row per
    character), other cores through a linear readout."""
    core = core_factory(config.agent.core, vocabulary_size, config.agent.core_options())(vocabulary_size)
    return CharPredictor(core, vocabulary_size, readout=config.agent.core not in STRAW_VARIANTS)


def run_text(config: Config, directory: Path) -> dict:
    settings = config.text
    torch.manual_seed(config.run.seed)
    corpus = corpus_of(config)
    model = model_of(config, corpus.vocabulary_size)
    telemetry = Telemetry(directory, console=config.telemetry.console, total_steps=settings.updates)

    def log(update: int, point: dict) -> None:
        scalars = {"text/train_bits_per_character": point["train_bits_per_character"],
                   "text/test_bits_per_character": point["test_bits_per_character"]}
        if point.get("replan_rate") is not None:
            scalars["straw/replan_rate"] = point["replan_rate"]
        if point.get("macro_length_mean") is not None:
            scalars["straw/macro_action_length_mean"] = point["macro_length_mean"]
        telemetry.scalars(update, scalars)
        if point["macro_lengths"]:
            telemetry.histogram(update, "straw/macro_action_length", np.asarray(point["macro_lengths"]))
        if config.telemetry.console:
            replans = f"  re-plan rate {point['replan_rate']:.3f}" if point.get("replan_rate") is not None else ""
            print(f"update {update:,}  train {point['train_bits_per_character']:.3f}  "
                  f"test {point['test_bits_per_character']:.3f} bits/char{replans}", flush=True)

    try:
        result = train_text(
            model, corpus, updates=settings.updates, batch_size=settings.batch_size,
            unroll_length=settings.unroll_length, learning_rate=settings.learning_rate,
            aux_costs=config.agent.aux_loss_costs(), seed=config.run.seed, evaluate_every=settings.evaluate_every,
            evaluate_batch_size=settings.evaluate_batch_size, max_grad_norm=settings.max_grad_norm, log_fn=log,
        )
    finally:
        telemetry.close()
    result = {"text": corpus.name, "vocabulary_size": corpus.vocabulary_size, "core": config.agent.core,
              "seed": config.run.seed, **result}
    (directory / RESULT_FILE).write_text(json.dumps(result, indent=1))
    Checkpointer.for_run(directory, config.checkpoint).save(
        model_payload(config, model.state_dict(), result), settings.updates
    )
    return result


def evaluate_text_checkpoint(config: Config, payload: dict, path: str, *, verbose: bool = True) -> dict:
    """Bits per character of a text checkpoint on its config's held-out text."""
    corpus = corpus_of(config)
    model = model_of(config, corpus.vocabulary_size)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path!r}: weights do not fit its config (or the text changed): {error}") from None
    scores = evaluate_text(model, corpus.test, batch_size=config.text.evaluate_batch_size,
                           unroll_length=config.text.unroll_length)
    if verbose:
        print(f"{config.agent.core} on {corpus.name}: {scores['characters']:,} held-out characters, "
              f"vocabulary {corpus.vocabulary_size}")
        print(f"test bits/char {scores['bits_per_character']:.4f}")
        if "replan_rate" in scores:
            mean = scores["macro_length_mean"]
            print(f"re-plan rate {scores['replan_rate']:.3f}, mean macro-action length "
                  f"{'n/a' if mean is None else f'{mean:.2f}'} steps")
    scores.pop("macro_lengths", None)
    return scores
