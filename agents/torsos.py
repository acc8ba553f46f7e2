"""Observation encoders ("torsos").

* :class:`ShallowTorso`: the IMPALA / A3C shallow conv net (Mnih et al. 2016):
  16 8×8/4 → 32 4×4/2 → FC 256, ReLU.
* :class:`DeepTorso`: the IMPALA deep ResNet (Espeholt et al. 2018, Fig. 3): three
  sections of conv 3×3 → max-pool 3×3/2 → two residual blocks, channels (16, 32, 32),
  then FC 256.
* :class:`VectorTorso`: a two-layer MLP for flat float observations (the cheap envs).

Image inputs are ``uint8`` ``[B, C, H, W]`` and are scaled to [0, 1] here, so frames stay
``uint8`` everywhere before the encoder. ``center_frames="background"`` (engram's default)
also subtracts each frame's background colour: on a game with a uniform non-black background
(Pong) the per-parameter optimiser steps otherwise drift every first-layer filter's weight
sum the same way until the channel is zero on every frame and dies. ``"mean"``, the older fix,
subtracts the mean instead, which on a black background (Breakout) shifts the input with the
game state and slows learning (benchmarks/RESULTS.md, "Learning on Atari").
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


FRAME_CENTRINGS = ("none", "mean", "background")
BACKGROUND_STRIDE = 4  # the median of every 4th pixel each way: 441 of an 84×84 frame's 7,056


def _scale_frames(frames: torch.Tensor, like: torch.Tensor, center: str = "none") -> torch.Tensor:
    """uint8 frames -> [0, 1] in the dtype of the weight ``like``, minus, per stacked frame:
    ``"mean"``, its mean; ``"background"``, its median (the colour of whatever covers most of
    the frame: 0 on Breakout's black, the field's grey on Pong), so that a uniform background
    reads 0 and the objects keep their values; ``"none"``, nothing."""
    scaled = frames.to(like.dtype) * (1.0 / 255.0)
    if center == "mean":
        scaled = scaled - scaled.mean(dim=(-2, -1), keepdim=True)
    elif center == "background":
        sample = frames[..., ::BACKGROUND_STRIDE, ::BACKGROUND_STRIDE].flatten(-2)
        background = sample.median(dim=-1).values.to(like.dtype) * (1.0 / 255.0)
        scaled = scaled - background[..., None, None]
    elif center != "none":
        raise ValueError(f"unknown frame centring {center!r}; expected one of {', '.join(FRAME_CENTRINGS)}")
    return scaled


SHALLOW_MIN_SIZE = 20  # 8×8/4 leaves at least 4 pixels for the 4×4/2 after it


def _image_shape(observation_shape: tuple[int, ...], torso: str) -> tuple[int, int, int]:
    if len(observation_shape) != 3:
        raise ValueError(
            f"the {torso} torso takes frames [C, H, W], got observations of shape {tuple(observation_shape)}: "
            "use the mlp torso for vectors"
        )
    return tuple(observation_shape)


class ShallowTorso(nn.Module):
    def __init__(self, observation_shape: tuple[int, ...], output_size: int = 256, center_frames: str = "none"):
        super().__init__()
        self.center_frames = center_frames
        channels, height, width = _image_shape(observation_shape, "shallow")
        if min(height, width) < SHALLOW_MIN_SIZE:
            raise ValueError(
                f"the shallow torso needs frames of at least {SHALLOW_MIN_SIZE}×{SHALLOW_MIN_SIZE} pixels, got "
                f"{height}×{width}: render larger frames (the maze's pixel_scale) or use the deep torso"
            )
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, channels, height, width)).shape[1]
        self.fc = nn.Linear(flat, output_size)
        self.output_size = output_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` ``[B, C, H, W]`` uint8 -> ``[B, output_size]``."""
        return F.relu(self.fc(self.convs(_scale_frames(frames, self.fc.weight, self.center_frames))))


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class DeepTorso(nn.Module):
    def __init__(
        self,
        observation_shape: tuple[int, ...],
        output_size: int = 256,
        channels: tuple[int, ...] = (16, 32, 32),
        center_frames: str = "none",
    ):
        super().__init__()
        self.center_frames = center_frames
        in_channels, height, width = _image_shape(observation_shape, "deep")
        sections = []
        for out_channels in channels:
            sections += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _ResidualBlock(out_channels),
                _ResidualBlock(out_channels),
            ]
            in_channels = out_channels
        self.sections = nn.Sequential(*sections, nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            flat = self.sections(torch.zeros(1, observation_shape[0], height, width)).shape[1]
        self.fc = nn.Linear(flat, output_size)
        self.output_size = output_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` ``[B, C, H, W]`` uint8 -> ``[B, output_size]``."""
        return F.relu(self.fc(self.sections(_scale_frames(frames, self.fc.weight, self.center_frames))))


class VectorTorso(nn.Module):
    def __init__(self, observation_shape: tuple[int, ...], output_size: int = 64):
        super().__init__()
        if len(observation_shape) != 1:
            raise ValueError(
                f"the mlp torso takes flat vector observations, got shape {tuple(observation_shape)}: "
                "use the shallow or deep torso for frames"
            )
        (size,) = observation_shape
        self.layers = nn.Sequential(
            nn.Linear(size, output_size), nn.ReLU(), nn.Linear(output_size, output_size), nn.ReLU()
        )
        self.output_size = output_size

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """``observations`` ``[B, D]`` -> ``[B, output_size]``."""
        return self.layers(observations.to(self.layers[0].weight.dtype))


TORSOS = {"shallow": ShallowTorso, "deep": DeepTorso, "mlp": VectorTorso}
