"""`engram train` and `engram eval` for ``run.kind: density``: a PixelCNN learns the density
of a small image set on one process (no Ray), with the run folder, telemetry and
checkpoint layout of the other run kinds.

TensorBoard gets ``density/train_bits_per_dim``, ``density/test_bits_per_dim`` and
``density/test_bits_per_dim/class_<k>`` at each evaluation, and at the end the pictures:
``density/samples_per_class`` (one row per class; for an unconditional model the rows are
just more draws), and for the autoencoder ``density/reconstructions`` (test images in the
first column, draws from ``p(x | f(x))`` beside them) and ``density/samples_fixed_code``
(many draws from the code of one test image). ``density_result.json`` holds the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from engram.checkpoint import Checkpointer, CheckpointError
from engram.checkpoint_payload import model_payload
from engram.config import Config, ConfigError
from engram.telemetry import Telemetry
from envs.image_sets import ImageSet, load_image_set
from learners.density_trainer import (
    DensityModelSpec,
    ImageDensity,
    evaluate_bits_per_dim,
    tensors,
    train_density,
)

RESULT_FILE = "density_result.json"


def image_set_of(config: Config) -> ImageSet:
    """The config's image set; :class:`ConfigError` if it cannot be loaded (its package missing)."""
    settings = config.density
    try:
        return load_image_set(settings.dataset, levels=settings.levels, test_fraction=settings.test_fraction)
    except ImportError as error:
        raise ConfigError(f"density.dataset={settings.dataset}: {error}") from None


def model_spec_of(config: Config) -> DensityModelSpec:
    settings = config.density
    return DensityModelSpec(
        model=settings.model, conditioning=settings.conditioning, layers=settings.layers,
        hidden_channels=settings.hidden_channels, kernel_size=settings.kernel_size,
        first_kernel_size=settings.first_kernel_size, code_size=settings.code_size,
    )


def density_model_of(config: Config, data: ImageSet) -> ImageDensity:
    channels, height, width = data.image_shape
    return ImageDensity.build(model_spec_of(config), channels=channels, levels=data.levels,
                              image_shape=(height, width), num_classes=data.num_classes)


def draw_image_grid(images: np.ndarray, levels: int, *, row_labels: list[str], title: str, column_labels=None) -> np.ndarray:
    """``images`` ``[rows, columns, 1, H, W]`` levels -> an RGB picture ``[h, w, 3]`` uint8 with
    each row labelled (white = the highest level, as the digits are drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    rows, columns = images.shape[:2]
    width = max(0.55 * columns + 1.0, 4.0)
    figure, axes = plt.subplots(rows, columns, figsize=(width, 0.55 * rows + 0.9), squeeze=False)
    for r in range(rows):
        for c in range(columns):
            axis = axes[r, c]
            axis.imshow(images[r, c, 0], cmap="gray", vmin=0, vmax=levels - 1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and column_labels is not None:
                axis.set_title(column_labels[c], fontsize=7)
    figure.suptitle(textwrap.fill(title, int(width * 11)), fontsize=9)
    figure.tight_layout()
    figure.canvas.draw()
    rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    plt.close(figure)
    return rgb


def pictures(config: Config, density: ImageDensity, data: ImageSet, seed: int) -> dict[str, np.ndarray]:
    """The end-of-run pictures by TensorBoard tag."""
    generator = torch.Generator().manual_seed(seed)
    shape = data.image_shape[1:]
    settings = config.density
    described = f"{settings.model} PixelCNN, conditioning {settings.conditioning}, {settings.dataset} at {data.levels} levels"
    drawn = density.samples_per_class(settings.samples_per_class, shape, generator).numpy()
    if density.conditioning == "class":
        labels, title = [f"class {k}" for k in range(data.num_classes)], f"samples given each class: {described}"
    else:
        labels, title = [""] * data.num_classes, f"unconditional samples: {described}"
    out = {"density/samples_per_class": draw_image_grid(drawn, data.levels, row_labels=labels, title=title)}
    if density.conditioning == "autoencoder":
        # one test image of each class, then draws given its code
        test_images, test_labels = tensors(data.test)
        firsts = torch.tensor([int(torch.nonzero(test_labels == k)[0]) for k in range(data.num_classes)])
        originals = test_images[firsts]
        redrawn = density.model.reconstruct(originals, samples=settings.samples_per_class - 1, generator=generator)
        grid = torch.cat([originals[:, None], redrawn], dim=1).numpy()
        out["density/reconstructions"] = draw_image_grid(
            grid, data.levels, row_labels=[f"test {k}" for k in range(data.num_classes)],
            column_labels=["input"] + [f"draw {i + 1}" for i in range(grid.shape[1] - 1)],
            title=f"draws from p(x | f(x)), code size {settings.code_size}: {described}",
        )
        fixed = density.model.reconstruct(originals[:1], samples=4 * settings.samples_per_class, generator=generator)
        out["density/samples_fixed_code"] = draw_image_grid(
            fixed.view(4, settings.samples_per_class, *fixed.shape[2:]).numpy(), data.levels,
            row_labels=[""] * 4, title="many draws given the code of one test image (class 0)",
        )
    return out


def run_density(config: Config, directory: Path) -> dict:
    settings = config.density
    torch.manual_seed(config.run.seed)
    data = image_set_of(config)
    density = density_model_of(config, data)
    telemetry = Telemetry(directory, console=config.telemetry.console, total_steps=settings.updates)

    def log(update: int, point: dict) -> None:
        scalars = {"density/train_bits_per_dim": point["train_bits_per_dim"],
                   "density/test_bits_per_dim": point["test_bits_per_dim"]}
        scalars.update({f"density/test_bits_per_dim/class_{k}": v for k, v in enumerate(point["test_per_class"])})
        telemetry.scalars(update, scalars)
        if config.telemetry.console:
            print(f"update {update:,}  train {point['train_bits_per_dim']:.3f}  test {point['test_bits_per_dim']:.3f} "
                  "bits/dim", flush=True)

    try:
        result = train_density(
            density, data, updates=settings.updates, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, seed=config.run.seed, evaluate_every=settings.evaluate_every,
            log_fn=log,
        )
        result = {"dataset": settings.dataset, "levels": data.levels, "model": settings.model,
                  "conditioning": settings.conditioning, "seed": config.run.seed, **result}
        (directory / RESULT_FILE).write_text(json.dumps(result, indent=1))
        Checkpointer.for_run(directory, config.checkpoint).save(
            model_payload(config, density.state_dict(), result), settings.updates
        )
        for tag, picture in pictures(config, density, data, config.run.seed).items():
            telemetry.image(settings.updates, tag, picture, dataformats="HWC")
    finally:
        telemetry.close()
    return result


def evaluate_density(config: Config, payload: dict, path: str, *, verbose: bool = True) -> dict:
    """Test bits/dim of a density checkpoint, overall and per class (the split its config names)."""
    data = image_set_of(config)
    density = density_model_of(config, data)
    try:
        density.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path!r}: weights do not fit its config: {error}") from None
    scores = evaluate_bits_per_dim(density, data.test, data.num_classes)
    if verbose:
        settings = config.density
        print(f"{settings.model} PixelCNN, conditioning {settings.conditioning}: {len(data.test)} test images of "
              f"{settings.dataset} at {data.levels} levels")
        print(f"test bits/dim {scores['all']:.4f}")
        print("per class: " + "  ".join(f"{k}: {v:.3f}" for k, v in enumerate(scores["per_class"])))
    return {"test_bits_per_dim": scores["all"], "per_class": scores["per_class"], "test_images": len(data.test)}
