"""An autoencoder whose decoder is a conditional Gated PixelCNN (van den Oord et al. 2016,
1606.05328 §3.4).

A convolutional encoder maps an image to a small code ``z = f(x)`` (``code_size`` numbers,
deterministic); the decoder is ``p(x | z)``, a Gated PixelCNN that takes ``z`` as its global
conditioning vector ``h`` in every gate (eq. 4). Both are trained end to end on
``−log p(x | f(x))``. Because the decoder models the pixels' detail itself, the code is
free to hold what is global about the image (the paper's "the model learns to encode
high-level information in the code").

Note on the numbers: ``−log p(x | f(x))`` does not count the bits needed to send ``z``, so
its bits/dim are not a likelihood of ``x`` and can fall below the unconditional model's.
"""

from __future__ import annotations

import torch
from torch import nn

from agents.pixelcnn import GatedPixelCNN


class ConvEncoder(nn.Module):
    """``[B, C, H, W]`` floats in [-1, 1] -> code ``[B, code_size]``: two 3×3 convolutions
    (the second with stride 2), ReLU, a linear map to the code."""

    def __init__(self, in_channels: int, image_shape: tuple[int, int], code_size: int, channels: int = 32):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_channels, *image_shape)).shape[1]
        self.code = nn.Linear(flat, code_size)

    def forward(self, x_scaled: torch.Tensor) -> torch.Tensor:
        return self.code(self.convs(x_scaled))


class PixelCNNAutoencoder(nn.Module):
    """``encoder`` (:class:`ConvEncoder`) and ``decoder`` (a :class:`GatedPixelCNN` with
    ``cond_size = code_size``)."""

    def __init__(self, encoder: ConvEncoder, decoder: GatedPixelCNN):
        super().__init__()
        if decoder.cond_size != encoder.code.out_features:
            raise ValueError(
                f"the decoder's cond_size ({decoder.cond_size}) must equal the code size ({encoder.code.out_features})"
            )
        self.encoder = encoder
        self.decoder = decoder
        self.in_channels = decoder.in_channels
        self.levels = decoder.levels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Levels ``[B, C, H, W]`` -> code ``[B, code_size]``."""
        return self.encoder(self.decoder.scale_levels(x))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | f(x))`` in nats, ``[B]``; its gradient reaches the encoder through the code."""
        return self.decoder.log_prob(x, self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.bits_per_dim(x, self.encode(x))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``samples`` draws from ``p(· | f(x))`` for each image: ``[B, samples, C, H, W]``."""
        code = self.encode(x).repeat_interleave(samples, dim=0)
        drawn = self.decoder.sample(len(code), code, shape=tuple(x.shape[-2:]), generator=generator)
        return drawn.view(len(x), samples, *x.shape[1:])

