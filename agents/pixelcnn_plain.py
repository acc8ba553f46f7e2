"""The original, ungated PixelCNN (van den Oord et al. 2016a, "Pixel Recurrent Neural
Networks", §3.5), the baseline the Gated PixelCNN paper (1606.05328 §2) improves on.

One stack of masked convolutions with ReLUs::

    x --7×7 mask A--> ReLU --[k×k mask B --> ReLU, + residual] × (layers − 1)--> 1×1 --> ReLU --> 1×1 --> logits

A masked ``k × k`` kernel sees the rows above the current pixel in full and, in the current
row, the pixels to its left (and at the pixel itself only the earlier channel groups, as in
:func:`agents.pixelcnn_layers.sub_pixel_mask`). Stacking such kernels grows the receptive
field as a triangle that leaves out a wedge of earlier pixels up and to the right: the
*blind spot* (1606.05328 Fig. 1), which the gated model's two stacks remove. Without
gates or a second stack this model is what "gating closes the gap" is measured against.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from agents.pixelcnn import AutoregressiveImageModel
from agents.pixelcnn_layers import MaskedConv2d, channel_groups, pointwise


def raster_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, kernel_size: int, *, include_own_group: bool) -> torch.Tensor:
    """A centred ``k × k`` mask ``[out, in, k, k]``: rows above the centre and the centre row's
    left half are visible; at the centre, output group ``c`` reads input group ``c' < c``
    (mask A) or ``c' <= c`` (mask B); everything right of or below the centre is hidden."""
    centre = kernel_size // 2
    mask = torch.zeros(len(out_groups), len(in_groups), kernel_size, kernel_size)
    mask[:, :, :centre, :] = 1.0
    mask[:, :, centre, :centre] = 1.0
    visible = in_groups[None, :] <= out_groups[:, None] if include_own_group else in_groups[None, :] < out_groups[:, None]
    mask[:, :, centre, centre] = visible.to(mask.dtype)
    return mask


class PlainPixelCNN(AutoregressiveImageModel):
    """Ungated single-stack PixelCNN over images of ``in_channels`` channels with ``levels``
    values each; unconditional. ``layers`` counts the mask-A layer; ``hidden_channels`` is
    the width of every layer (>= ``in_channels``)."""

    def __init__(
        self,
        in_channels: int,
        levels: int,
        *,
        layers: int,
        hidden_channels: int,
        kernel_size: int,
        first_kernel_size: int,
    ):
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        for name, size in (("kernel_size", kernel_size), ("first_kernel_size", first_kernel_size)):
            if size % 2 != 1 or size < 3:
                raise ValueError(f"{name} must be odd and >= 3, got {size}")
        self.in_channels = in_channels
        self.levels = levels
        self.cond_size = self.cond_map_channels = None  # unconditional
        image_groups = torch.arange(in_channels)
        hidden_groups = channel_groups(hidden_channels, in_channels)

        def masked(in_groups, k, include_own_group):
            mask = raster_mask(hidden_groups, in_groups, k, include_own_group=include_own_group)
            return MaskedConv2d(len(in_groups), hidden_channels, (k, k), padding=(k // 2,) * 4, mask=mask)

        self.first = masked(image_groups, first_kernel_size, False)
        self.hidden = nn.ModuleList(masked(hidden_groups, kernel_size, True) for _ in range(layers - 1))
        self.head_hidden = pointwise(hidden_groups, hidden_groups)
        self.head_logits = pointwise(hidden_groups, channel_groups(in_channels * levels, in_channels))

    def logits_from_scaled(self, x_scaled: torch.Tensor, cond=None, cond_map=None) -> torch.Tensor:
        """``[B, C, H, W]`` in [-1, 1] -> logits ``[B, C, L, H, W]``; takes no conditioning."""
        if cond is not None or cond_map is not None:
            raise ValueError("the plain PixelCNN is unconditional; use the gated model for conditioning")
        batch, channels, height, width = x_scaled.shape
        if channels != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got input of shape {tuple(x_scaled.shape)}")
        features = F.relu(self.first(x_scaled))
        for layer in self.hidden:
            features = features + F.relu(layer(features))
        logits = self.head_logits(F.relu(self.head_hidden(features)))
        return logits.view(batch, channels, self.levels, height, width)
