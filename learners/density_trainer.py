"""Training a PixelCNN as a density model of a small image set (``run.kind: density``).

:class:`ImageDensity` puts the three ways the Gated PixelCNN paper uses the model behind one
interface, ``bits_per_dim(images, labels)``:

* ``conditioning="none"``: ``p(x)``, the gated (1606.05328 §2.2) or plain (PixelRNN §3.5) model;
* ``"class"``: ``p(x | h)`` with ``h`` the class one-hot in every gate (§2.3 eq. 4, §3.1);
* ``"autoencoder"``: ``p(x | f(x))`` with a convolutional encoder ``f`` (§3.4).

:func:`train_density` minimises the mean negative log-likelihood over minibatches with Adam
and scores the held-out split in bits per dimension (``−log₂ p / (C·H·W)``), overall and per
class. Everything here is independent of Ray and of the RL learner.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from agents.pixelcnn import GatedPixelCNN
from agents.pixelcnn_autoencoder import ConvEncoder, PixelCNNAutoencoder
from agents.pixelcnn_plain import PlainPixelCNN
from envs.image_sets import ImageSet, ImageSplit
from learners.errors import DivergenceError

MODELS = ("gated", "plain")
CONDITIONINGS = ("none", "class", "autoencoder")


@dataclass(frozen=True)
class DensityModelSpec:
    model: str  # one of MODELS
    conditioning: str  # one of CONDITIONINGS
    layers: int
    hidden_channels: int
    kernel_size: int
    first_kernel_size: int
    code_size: int  # the autoencoder's code; unused otherwise


class ImageDensity(nn.Module):
    """A PixelCNN and how it is conditioned. Build with :meth:`build`."""

    def __init__(self, model: nn.Module, conditioning: str, num_classes: int):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {conditioning!r}; expected one of {', '.join(CONDITIONINGS)}")
        self.model = model
        self.conditioning = conditioning
        self.num_classes = num_classes

    @classmethod
    def build(cls, spec: DensityModelSpec, *, channels: int, levels: int, image_shape: tuple[int, int], num_classes: int):
        if spec.model not in MODELS:
            raise ValueError(f"unknown density model {spec.model!r}; expected one of {', '.join(MODELS)}")
        if spec.model == "plain" and spec.conditioning != "none":
            raise ValueError("the plain PixelCNN is unconditional: use conditioning none, or the gated model")
        sizes = dict(layers=spec.layers, hidden_channels=spec.hidden_channels, kernel_size=spec.kernel_size,
                     first_kernel_size=spec.first_kernel_size)
        if spec.model == "plain":
            return cls(PlainPixelCNN(channels, levels, **sizes), "none", num_classes)
        cond_size = {"none": None, "class": num_classes, "autoencoder": spec.code_size}[spec.conditioning]
        decoder = GatedPixelCNN(channels, levels, cond_size=cond_size, **sizes)
        if spec.conditioning == "autoencoder":
            decoder = PixelCNNAutoencoder(ConvEncoder(channels, image_shape, spec.code_size), decoder)
        return cls(decoder, spec.conditioning, num_classes)

    def class_vector(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``[B]`` -> the class one-hot ``h`` ``[B, num_classes]``."""
        return F.one_hot(labels.long(), self.num_classes).to(torch.get_default_dtype())

    def bits_per_dim(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[B]`` bits/dim of each image under the model (given its class where conditioned on it)."""
        if self.conditioning == "class":
            return self.model.bits_per_dim(images, self.class_vector(labels))
        return self.model.bits_per_dim(images)

    @torch.no_grad()
    def samples_per_class(self, per_class: int, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
        """``[num_classes, per_class, C, H, W]``: drawn given each class (``class``), else
        ``num_classes × per_class`` unconditional draws (for the autoencoder: decoded from
        codes of standard-normal noise, which only shows what the decoder does off the data)."""
        n = self.num_classes * per_class
        if self.conditioning == "class":
            labels = torch.arange(self.num_classes).repeat_interleave(per_class)
            drawn = self.model.sample(n, self.class_vector(labels), shape=shape, generator=generator)
        elif self.conditioning == "autoencoder":
            code = torch.randn(n, self.model.decoder.cond_size, generator=generator)
            drawn = self.model.decoder.sample(n, code, shape=shape, generator=generator)
        else:
            drawn = self.model.sample(n, shape=shape, generator=generator)
        return drawn.view(self.num_classes, per_class, *drawn.shape[1:])


def tensors(split: ImageSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's images and labels as tensors (sharing memory with its arrays)."""
    return torch.from_numpy(split.images), torch.from_numpy(split.labels)


@torch.no_grad()
def evaluate_bits_per_dim(density: ImageDensity, split: ImageSplit, num_classes: int, batch_size: int = 256) -> dict:
    """Mean bits/dim over ``split`` and per class: ``{"all": x, "per_class": [x_0, …]}``."""
    images, labels = tensors(split)
    density.eval()
    bits = torch.cat([
        density.bits_per_dim(images[i : i + batch_size], labels[i : i + batch_size])
        for i in range(0, len(split), batch_size)
    ])
    density.train()
    per_class = [float(bits[labels == c].mean()) if bool((labels == c).any()) else math.nan
                 for c in range(num_classes)]
    return {"all": float(bits.mean()), "per_class": per_class}


def train_density(
    density: ImageDensity,
    data: ImageSet,
    *,
    updates: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    evaluate_every: int,
    log_fn: Callable[[int, dict], None] | None = None,
) -> dict:
    """Adam on the mean NLL of random training minibatches for ``updates`` steps, scoring the
    test split every ``evaluate_every`` updates and at the end.

    Returns a JSON-ready dict: ``test_bits_per_dim`` (at the end) and its ``per_class``,
    ``best_test_bits_per_dim`` and the update it came at, ``train_bits_per_dim`` (mean of the
    last ``evaluate_every`` minibatches), the ``curve`` of evaluations, ``parameters`` and
    ``seconds``.
    """
    if updates < 1 or batch_size < 1 or evaluate_every < 1:
        raise ValueError(f"updates, batch_size and evaluate_every must be >= 1, got {updates}, {batch_size}, {evaluate_every}")
    generator = torch.Generator().manual_seed(seed)
    train_images, train_labels = tensors(data.train)
    recent = deque(maxlen=evaluate_every)  # the training losses since the last evaluation
    optimizer = torch.optim.Adam(density.parameters(), lr=learning_rate)
    curve, started = [], time.perf_counter()
    best = (math.inf, 0)
    for update in range(1, updates + 1):
        index = torch.randint(len(data.train), (batch_size,), generator=generator)
        bits = density.bits_per_dim(train_images[index], train_labels[index])
        loss = bits.mean()
        if not torch.isfinite(loss):
            raise DivergenceError(f"the density model's loss is {float(loss)} at update {update}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent.append(loss.item())
        if update % evaluate_every == 0 or update == updates:
            test = evaluate_bits_per_dim(density, data.test, data.num_classes)
            point = {"update": update, "train_bits_per_dim": sum(recent) / len(recent), "test_bits_per_dim": test["all"],
                     "test_per_class": test["per_class"], "seconds": time.perf_counter() - started}
            curve.append(point)
            if test["all"] < best[0]:
                best = (test["all"], update)
            if log_fn is not None:
                log_fn(update, point)
    final = curve[-1]
    return {
        "test_bits_per_dim": final["test_bits_per_dim"],
        "per_class": final["test_per_class"],
        "best_test_bits_per_dim": best[0],
        "best_update": best[1],
        "train_bits_per_dim": final["train_bits_per_dim"],
        "updates": updates,
        "curve": curve,
        "parameters": sum(p.numel() for p in density.parameters()),
        "seconds": final["seconds"],
    }
