"""Building blocks of the Gated PixelCNN (van den Oord et al. 2016, arXiv 1606.05328).

Two pieces live here, each small enough to check by hand:

* :func:`channel_groups` and :class:`MaskedConv2d`: the sub-pixel ("channel") masks.
  With ``C`` image channels ordered R → G → B, every feature map belongs to one of ``C``
  groups; group ``c`` at pixel ``i`` may depend on channels ``< c`` of pixel ``i`` (mask A,
  the first layer) or on feature groups ``<= c`` (mask B, every later layer), and on
  everything at earlier pixels (van den Oord et al. 2016a, PixelRNN §3.4, Fig. 2).
* :class:`GatedLayer`: one layer of the two stacks (1606.05328 §2.2, Fig. 2).

The causality invariant (the whole model rests on it)
-----------------------------------------------------
* Vertical stack ``v`` at ``(row i, col j)`` depends on input rows ``< i`` only (any column
  within its receptive field). The first vertical convolution has a ``(k//2) × k`` kernel
  over the ``k//2`` rows strictly above (a down-shift); later ones have a
  ``(k//2 + 1) × k`` kernel over rows ``<= i`` of a stack that already excludes row ``i``.
  Because ``v`` never sees row ``i``, it holds no sub-pixel information and needs no
  channel mask, and it may feed the horizontal stack at the *same* position through a
  1×1 convolution ("vertical feeds horizontal, never the other way", §2.2).
* Horizontal stack ``h`` at ``(i, j)``, group ``c``: pixels ``(i, j' < j)`` through a
  ``1 × (k//2 + 1)`` kernel ending at column ``j``, whose last column carries the channel
  mask; plus ``v`` at ``(i, j)``. Together the two stacks cover the whole raster past
  without the blind spot of the original PixelCNN (§2.2).

The gate (eq. 2 and eq. 4, conditional)::

    y = tanh(W_f ∗ x + V_f h) ⊙ σ(W_g ∗ x + V_g h)              (global vector h)
    y = tanh(W_f ∗ x + V_f ∗ s) ⊙ σ(W_g ∗ x + V_g ∗ s)          (map s = m(h), V ∗ s 1×1)

Feature maps are ``[B, 2p, H, W]`` before the gate (first ``p`` are the ``f`` half, last ``p``
the ``g`` half; channel ``k`` of each half belongs to group ``channel_groups(p, C)[k]``) and
``[B, p, H, W]`` after it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def channel_groups(num_maps: int, num_groups: int) -> torch.Tensor:
    """Group id of each of ``num_maps`` feature maps, contiguous blocks: ``[num_maps]`` int64.

    ``num_maps`` must be at least ``num_groups`` so every group owns a map.
    """
    if num_maps < num_groups:
        raise ValueError(f"need at least one feature map per channel group: {num_maps} maps < {num_groups} groups")
    return torch.arange(num_maps) * num_groups // num_maps


def gate_groups(maps_per_half: int, num_groups: int) -> torch.Tensor:
    """Groups of a pre-gate tensor ``[f; g]`` of ``2 * maps_per_half`` maps: ``[2p]``."""
    half = channel_groups(maps_per_half, num_groups)
    return torch.cat([half, half])


def sub_pixel_mask(
    out_groups: torch.Tensor,
    in_groups: torch.Tensor,
    kernel_size: tuple[int, int],
    *,
    include_own_group: bool,
) -> torch.Tensor:
    """Mask ``[out, in, kh, kw]`` whose last kernel position (the current pixel) is masked.

    At the current pixel output group ``c`` may read input group ``c'`` iff ``c' < c``
    (mask A, ``include_own_group=False``) or ``c' <= c`` (mask B). All other kernel
    positions are earlier pixels and are fully visible. The caller pads so that the
    kernel's bottom-right tap lands on the current pixel.
    """
    kernel_height, kernel_width = kernel_size
    mask = torch.ones(len(out_groups), len(in_groups), kernel_height, kernel_width)
    if include_own_group:
        visible = in_groups[None, :] <= out_groups[:, None]
    else:
        visible = in_groups[None, :] < out_groups[:, None]
    mask[:, :, kernel_height - 1, kernel_width - 1] = visible.to(mask.dtype)
    return mask


class MaskedConv2d(nn.Module):
    """A convolution whose weight is multiplied by a fixed 0/1 mask on every call.

    ``padding`` is ``(left, right, top, bottom)`` as in :func:`torch.nn.functional.pad`;
    ``crop_last_row`` drops the last output row (the down-shift of the first vertical
    layer). Multiplying by the mask (rather than zeroing once) keeps masked taps at exactly
    zero through every optimiser step, so masked inputs get exactly zero gradient.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        *,
        padding: tuple[int, int, int, int],
        mask: torch.Tensor | None = None,
        crop_last_row: bool = False,
    ):
        super().__init__()
        kernel_height, kernel_width = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_height, kernel_width))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if mask is None:
            mask = torch.ones_like(self.weight)
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(self.weight.shape)}")
        self.register_buffer("mask", mask)
        self.masked = not bool(mask.all())  # an all-ones mask (mask B with one image channel) is skipped
        self.padding = padding
        self.crop_last_row = crop_last_row
        # Kaiming-uniform on the visible fan-in (masked taps do not count).
        visible_fan_in = max(float(mask.sum(dim=(1, 2, 3)).mean()), 1.0)
        bound = 1.0 / math.sqrt(visible_fan_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, in, H, W]`` -> ``[B, out, H, W]``."""
        weight = self.weight * self.mask if self.masked else self.weight
        if any(self.padding):
            x = F.pad(x, self.padding)
        y = F.conv2d(x, weight, self.bias)
        if self.crop_last_row:
            y = y[:, :, :-1, :]
        return y


def pointwise(in_groups: torch.Tensor, out_groups: torch.Tensor) -> MaskedConv2d:
    """A 1×1 convolution with mask B between grouped feature maps."""
    mask = sub_pixel_mask(out_groups, in_groups, (1, 1), include_own_group=True)
    return MaskedConv2d(len(in_groups), len(out_groups), (1, 1), padding=(0, 0, 0, 0), mask=mask)


class GatedLayer(nn.Module):
    """One layer of the vertical and horizontal stacks (1606.05328 Fig. 2).

    ``first=True``: reads the image (``in_channels = C``, groups = channel index), uses the
    down-shifted ``(k//2) × k`` vertical kernel and mask A, and has no residual connection.
    Later layers read ``p`` maps per stack, use mask B and add the residual in the
    horizontal stack (the vertical stack has none, as in the paper).

    Returns ``(v_out [B, p, H, W], h_out [B, p, H, W], skip [B, p, H, W])``; ``skip`` feeds
    the output head.
    """

    def __init__(
        self,
        *,
        image_channels: int,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int,
        first: bool,
        cond_size: int | None,
        cond_map_channels: int | None,
    ):
        super().__init__()
        if kernel_size % 2 != 1 or kernel_size < (3 if first else 1):
            raise ValueError(
                f"kernel_size must be odd and >= {3 if first else 1} for {'the first' if first else 'a later'} "
                f"layer, got {kernel_size}"
            )
        p = hidden_channels
        half = kernel_size // 2
        self.hidden_channels = p
        self.first = first
        pre_gate = gate_groups(p, image_channels)
        if first:
            in_groups = torch.arange(image_channels)  # raw channels: channel c is group c
            # rows i-k//2 .. i-1: pad k//2 on top, none below, crop the extra last row.
            self.vertical_conv = MaskedConv2d(
                in_channels, 2 * p, (half, kernel_size), padding=(half, half, half, 0), crop_last_row=True
            )
        else:
            in_groups = channel_groups(p, image_channels)
            # rows i-k//2 .. i of a stack that already sees only rows < its own.
            self.vertical_conv = MaskedConv2d(
                in_channels, 2 * p, (half + 1, kernel_size), padding=(half, half, half, 0)
            )
        horizontal_mask = sub_pixel_mask(pre_gate, in_groups, (1, half + 1), include_own_group=not first)
        self.horizontal_conv = MaskedConv2d(
            in_channels, 2 * p, (1, half + 1), padding=(half, 0, 0, 0), mask=horizontal_mask
        )
        # vertical -> horizontal link (1x1, pre-gate to pre-gate); v holds no current-row
        # information, so no sub-pixel mask is needed.
        self.vertical_to_horizontal = nn.Conv2d(2 * p, 2 * p, 1)
        gated_groups = channel_groups(p, image_channels)
        self.skip_conv = pointwise(gated_groups, gated_groups)
        self.residual_conv = None if first else pointwise(gated_groups, gated_groups)
        # V_f h, V_g h (global) and V ∗ s (map), separately for each stack.
        self.cond_vertical = nn.Linear(cond_size, 2 * p, bias=False) if cond_size else None
        self.cond_horizontal = nn.Linear(cond_size, 2 * p, bias=False) if cond_size else None
        self.map_vertical = nn.Conv2d(cond_map_channels, 2 * p, 1, bias=False) if cond_map_channels else None
        self.map_horizontal = nn.Conv2d(cond_map_channels, 2 * p, 1, bias=False) if cond_map_channels else None

    def _gate(self, pre: torch.Tensor) -> torch.Tensor:
        f, g = pre.split(self.hidden_channels, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)  # eq. 2

    def forward(
        self,
        v: torch.Tensor,
        h: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_map: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``v``, ``h`` ``[B, in, H, W]``; ``cond`` ``[B, cond_size]``; ``cond_map`` ``[B, M, H, W]``."""
        v_pre = self.vertical_conv(v)  # W_{f,g} ∗ v
        h_pre = self.horizontal_conv(h) + self.vertical_to_horizontal(v_pre)
        if self.cond_vertical is not None:
            if cond is None:
                raise ValueError("this PixelCNN was built with cond_size; pass cond [B, cond_size]")
            v_pre = v_pre + self.cond_vertical(cond)[:, :, None, None]  # V_{f,g} h, eq. 4
            h_pre = h_pre + self.cond_horizontal(cond)[:, :, None, None]
        if self.map_vertical is not None:
            if cond_map is None:
                raise ValueError("this PixelCNN was built with cond_map_channels; pass cond_map [B, M, H, W]")
            v_pre = v_pre + self.map_vertical(cond_map)  # V_{f,g} ∗ s, eq. 5
            h_pre = h_pre + self.map_horizontal(cond_map)
        v_out = self._gate(v_pre)
        h_gated = self._gate(h_pre)
        skip = self.skip_conv(h_gated)
        if self.residual_conv is None:
            h_out = h_gated
        else:
            h_out = h + self.residual_conv(h_gated)
        return v_out, h_out, skip
