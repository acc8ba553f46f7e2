"""Small labelled image sets that ship inside an installed package (no download), for the
density-model runs (``run.kind: density``).

* ``digits``: scikit-learn's copy of the UCI optical handwritten digits (1,797 images,
  8×8, one channel, values 0–16, classes 0–9; ``sklearn.datasets.load_digits``, which reads
  a file inside the package).

Images are quantised to ``levels`` values (``floor(v · levels / 17)``; 17 keeps every value)
and split into train and test sets per class, so each class has the same test share. The
split depends only on ``split_seed`` (fixed at 0 by the runs), never on a run's seed, so
models trained with different seeds are scored on the same held-out images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SETS = ("digits",)
DIGITS_VALUES = 17


@dataclass(frozen=True)
class ImageSplit:
    """Levels ``[N, C, H, W]`` int64 and labels ``[N]`` int64 (numpy: envs/ never imports torch)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ImageSet:
    name: str
    train: ImageSplit
    test: ImageSplit
    levels: int
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def load_digits_levels(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as levels ``[1797, 1, 8, 8]`` in ``[0, levels)`` and labels ``[1797]``."""
    if not 2 <= levels <= DIGITS_VALUES:
        raise ValueError(f"digits have {DIGITS_VALUES} values; levels must lie in [2, {DIGITS_VALUES}], got {levels}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the digits image set comes with scikit-learn: pip install 'engram-rl[images]' (or scikit-learn)"
        ) from None
    digits = load_digits()
    values = digits.images.astype(np.int64)  # [N, 8, 8], 0..16
    quantised = values * levels // DIGITS_VALUES
    return quantised[:, None], digits.target.astype(np.int64)


def load_image_set(name: str, *, levels: int, test_fraction: float, split_seed: int = 0) -> ImageSet:
    """``name`` quantised to ``levels`` and split per class, ``test_fraction`` of each class held out."""
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown image set {name!r}; expected one of {', '.join(IMAGE_SETS)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    images, labels = load_digits_levels(levels)
    rng = np.random.default_rng(split_seed)
    train_index, test_index = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held_out = max(1, round(test_fraction * len(members)))
        test_index.append(members[:held_out])
        train_index.append(members[held_out:])
    train_index, test_index = np.sort(np.concatenate(train_index)), np.sort(np.concatenate(test_index))

    def split(index: np.ndarray) -> ImageSplit:
        return ImageSplit(images[index], labels[index])

    return ImageSet(name, split(train_index), split(test_index), levels, int(labels.max()) + 1)
