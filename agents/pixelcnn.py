"""Gated PixelCNN density model (van den Oord et al. 2016, "Conditional Image Generation
with PixelCNN Decoders", arXiv 1606.05328).

The model factorises an image of ``C`` channels and ``H × W`` pixels in raster order, with
the channels of one pixel ordered R → G → B (eq. 1 and PixelRNN eq. 2)::

    p(x) = Π_i p(x_{i,R} | x_<i) · p(x_{i,G} | x_<i, x_{i,R}) · p(x_{i,B} | x_<i, x_{i,R}, x_{i,G})

and each factor is a softmax over the ``L`` levels of one sub-pixel (PixelRNN, discrete softmax).

Architecture (the layers are in :mod:`agents.pixelcnn_layers`)::

    image x ∈ {0..L-1}^{C×H×W} --scale to [-1, 1]-->
      layer 0: vertical (k0//2)×k0 down-shifted conv, horizontal 1×(k0//2+1) mask A, gate
      layers 1..n-1: vertical (k//2+1)×k conv, horizontal 1×(k//2+1) mask B, gate,
                     horizontal residual (§2.2, Fig. 2)
      every layer: vertical pre-gate --1×1--> horizontal pre-gate; skip 1×1 mask B
    Σ skips --ReLU--> 1×1 mask B --ReLU--> 1×1 mask B --> logits [B, C, L, H, W]

Conditioning (§2.3): a global vector ``h`` ``[B, cond_size]`` enters every gate as
``V_f h`` / ``V_g h`` (eq. 4); a location-dependent map ``s`` ``[B, M, H, W]`` (already
``m(h)``, e.g. a deconvolution of ``h``) enters as ``V_f ∗ s`` / ``V_g ∗ s`` with 1×1
convolutions (eq. 5).

Likelihoods are in nats per image; bits/dim = ``-log_prob / (C·H·W·ln 2)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from agents.pixelcnn_layers import GatedLayer, channel_groups, pointwise


class AutoregressiveImageModel(nn.Module):
    """What every raster-order image model here shares: levels in, logits out.

    A subclass sets ``in_channels`` and ``levels`` and implements :meth:`logits_from_scaled`
    (``[B, C, H, W]`` floats in [-1, 1] -> ``[B, C, L, H, W]``, each logit depending only on the
    sub-pixels before it) and :meth:`row_logits`; this class gives the likelihood, bits/dim and
    ancestral sampling from them.
    """

    in_channels: int
    levels: int

    def logits_from_scaled(self, x_scaled, cond=None, cond_map=None) -> torch.Tensor:
        raise NotImplementedError

    def row_logits(self, x, row: int, cond=None, cond_map=None) -> torch.Tensor:
        """``logits(x)[:, :, :, row]`` ``[B, C, L, W]``; a subclass may compute it on fewer rows."""
        return self.logits(x, cond, cond_map)[:, :, :, row]

    def scale_levels(self, x: torch.Tensor) -> torch.Tensor:
        """Levels ``[B, C, H, W]`` int64 in ``[0, L)`` -> floats in ``[-1, 1]`` (default dtype)."""
        return x.to(torch.get_default_dtype()) * (2.0 / (self.levels - 1)) - 1.0

    def logits(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, cond_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Levels ``[B, C, H, W]`` int64 -> logits ``[B, C, L, H, W]``.

        ``logits[b, c, :, i, j]`` parametrises ``p(x[b, c, i, j] | x before it in raster order)``.
        """
        return self.logits_from_scaled(self.scale_levels(x), cond, cond_map)

    def log_prob(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, cond_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log p(x)`` in nats, ``[B]``, for levels ``x`` ``[B, C, H, W]`` int64.

        ``cond`` is the global vector ``[B, cond_size]``, ``cond_map`` the map ``[B, M, H, W]``.
        """
        if x.dtype not in (torch.int64, torch.int32, torch.uint8):
            raise TypeError(f"x must hold integer levels, got dtype {x.dtype}")
        log_probs = F.log_softmax(self.logits(x, cond, cond_map), dim=2)  # [B, C, L, H, W]
        per_sub_pixel = log_probs.gather(2, x.long().unsqueeze(2)).squeeze(2)  # [B, C, H, W]
        return per_sub_pixel.flatten(1).sum(1)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, cond_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Same as :meth:`log_prob` (so ``torch.func.functional_call`` gives per-image log-likelihoods)."""
        return self.log_prob(x, cond, cond_map)

    def bits_per_dim(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, cond_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``-log2 p(x) / (C·H·W)``, ``[B]``."""
        return -self.log_prob(x, cond, cond_map) / (x[0].numel() * math.log(2.0))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
        *,
        shape: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images ``[n, C, H, W]`` int64 of ``shape = (H, W)`` by ancestral sampling,
        one sub-pixel at a time in raster order (``C·H·W`` calls of :meth:`row_logits`)."""
        height, width = shape
        device = next(self.parameters()).device
        x = torch.zeros(n, self.in_channels, height, width, dtype=torch.int64, device=device)
        for row in range(height):
            for column in range(width):
                for channel in range(self.in_channels):
                    logits = self.row_logits(x, row, cond, cond_map)[:, channel, :, column]  # [n, L]
                    probabilities = F.softmax(logits.double(), dim=-1)
                    x[:, channel, row, column] = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
        return x


class GatedPixelCNN(AutoregressiveImageModel):
    """Gated PixelCNN over images of ``in_channels`` channels with ``levels`` values each.

    Args:
        in_channels: ``C``, the image channels, modelled in order 0 → C-1 within a pixel.
        levels: ``L``, the number of values of a sub-pixel (softmax width).
        layers: number of gated layers (the first is the mask-A layer; >= 1).
        hidden_channels: ``p``, feature maps per stack (>= ``C``, one group per channel).
        kernel_size: ``k`` of layers 1..n-1 (odd, >= 1); vertical ``(k//2+1) × k``,
            horizontal ``1 × (k//2+1)``.
        first_kernel_size: ``k0`` of layer 0 (odd, >= 3); vertical ``(k0//2) × k0``,
            horizontal ``1 × (k0//2+1)``.
        cond_size: size of a global conditioning vector, or None.
        cond_map_channels: channels of a conditioning map ``[B, M, H, W]``, or None.
        head_channels: feature maps of the output head's hidden 1×1 layer (default ``p``).
    """

    def __init__(
        self,
        in_channels: int,
        levels: int,
        *,
        layers: int,
        hidden_channels: int,
        kernel_size: int,
        first_kernel_size: int,
        cond_size: int | None = None,
        cond_map_channels: int | None = None,
        head_channels: int | None = None,
    ):
        super().__init__()
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.in_channels = in_channels
        self.levels = levels
        self.cond_size = cond_size
        self.cond_map_channels = cond_map_channels
        self.layers = nn.ModuleList(
            GatedLayer(
                image_channels=in_channels,
                in_channels=in_channels if index == 0 else hidden_channels,
                hidden_channels=hidden_channels,
                kernel_size=first_kernel_size if index == 0 else kernel_size,
                first=index == 0,
                cond_size=cond_size,
                cond_map_channels=cond_map_channels,
            )
            for index in range(layers)
        )
        head_channels = head_channels or hidden_channels
        hidden_groups = channel_groups(hidden_channels, in_channels)
        head_groups = channel_groups(head_channels, in_channels)
        logit_groups = channel_groups(in_channels * levels, in_channels)  # map k -> channel k // L
        self.head_hidden = pointwise(hidden_groups, head_groups)
        self.head_logits = pointwise(head_groups, logit_groups)

    def logits_from_scaled(
        self,
        x_scaled: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Float input ``[B, C, H, W]`` (see :meth:`scale_levels`) -> logits ``[B, C, L, H, W]``.

        Exposed so tests can differentiate the logits with respect to the input.
        """
        batch, channels, height, width = x_scaled.shape
        if channels != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got input of shape {tuple(x_scaled.shape)}")
        self._check_conditioning(batch, height, width, cond, cond_map)
        v = h = x_scaled
        skip_sum = 0.0
        for layer in self.layers:
            v, h, skip = layer(v, h, cond, cond_map)
            skip_sum = skip_sum + skip
        hidden = F.relu(self.head_hidden(F.relu(skip_sum)))
        logits = self.head_logits(hidden)  # [B, C*L, H, W], map k belongs to channel k // L
        return logits.view(batch, channels, self.levels, height, width)

    def row_logits(
        self,
        x: torch.Tensor,
        row: int,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``logits(x)[:, :, :, row]`` ``[B, C, L, W]``, computed on rows ``row - receptive_rows .. row`` only.

        Nothing flows upwards (no bottom padding anywhere), and the cropped-away rows lie
        outside the row's receptive field, so these equal the full image's logits; sampling
        an image costs ``C·H·W`` passes over a few rows instead of over the whole image.
        """
        top = max(0, row - self.receptive_rows)
        rows_map = None if cond_map is None else cond_map[:, :, top : row + 1]
        return self.logits(x[:, :, top : row + 1], cond, rows_map)[:, :, :, -1]

    @property
    def receptive_rows(self) -> int:
        """How many rows above its own a pixel's logits can depend on."""
        kernel_heights = [layer.vertical_conv.weight.shape[2] for layer in self.layers]
        # layer 0 reaches k0//2 rows up; each later layer adds its kernel height - 1.
        return kernel_heights[0] + sum(k - 1 for k in kernel_heights[1:])

    def _check_conditioning(
        self,
        batch: int,
        height: int,
        width: int,
        cond: torch.Tensor | None,
        cond_map: torch.Tensor | None,
    ) -> None:
        if cond is not None:
            if self.cond_size is None:
                raise ValueError("cond given, but this PixelCNN was built without cond_size")
            if cond.shape != (batch, self.cond_size):
                raise ValueError(f"cond must be [{batch}, {self.cond_size}], got {tuple(cond.shape)}")
        if cond_map is not None:
            if self.cond_map_channels is None:
                raise ValueError("cond_map given, but this PixelCNN was built without cond_map_channels")
            expected = (batch, self.cond_map_channels, height, width)
            if cond_map.shape != expected:
                raise ValueError(f"cond_map must be {list(expected)}, got {tuple(cond_map.shape)}")
