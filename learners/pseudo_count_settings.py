"""The settings of the PixelCNN pseudo-count bonus (learners/exploration.py), torch-free so
that the config (``exploration:``) takes its defaults and its rules from here: one home for
each default and each rule."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class PseudoCountConfig:
    """Settings of :class:`PseudoCountBonus` (the ``exploration:`` block, ``kind: pixelcnn``)."""

    beta: float = 0.1
    """β, scale of the bonus r⁺ = β (N̂ + 0.01)^{-1/2}. Bellemare et al. 2016 used 0.05 with CTS;
    0.1 is our default for the PixelCNN (check against Ostrovski et al. 2017 before citing)."""
    c: float = 0.1
    """c of the prediction-gain decay c · n^{-1/2} (Ostrovski et al. 2017)."""
    pg: Literal["exact", "first_order"] = "exact"
    """How the prediction gain is computed: ``exact`` (before/after the step) or
    ``first_order`` (preconditioned squared gradient)."""
    update: Literal["per_frame", "per_batch"] = "per_frame"
    """One optimiser step per frame in order (the papers'), or one per learner batch
    (needs ``pg: first_order``)."""
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    """Optimiser of the density model."""
    lr: float = 1e-3
    """Constant learning rate η of the density model (Ostrovski et al.: constant, no decay)."""
    rmsprop_alpha: float = 0.95
    """RMSProp second-moment decay α (engineering choice)."""
    eps: float = 1e-4
    """ε of RMSProp / Adam, added to sqrt(v) (engineering choice)."""
    levels: int = 8
    """Grey levels per pixel after quantisation (3 bits)."""
    image_size: int = 42
    """Side of the downsampled frame the model sees."""
    layers: int = 3
    """Gated layers: the 7×7 mask-A layer plus two 1×1 gated residual blocks."""
    hidden_channels: int = 16
    """Feature maps per stack."""
    first_kernel_size: int = 7
    """Kernel of the mask-A layer."""
    kernel_size: int = 1
    """Kernel of the later gated layers."""
    head_channels: int = 64
    """Hidden 1×1 layer of the output head."""

    def __post_init__(self):
        if self.pg not in ("exact", "first_order"):
            raise ValueError(f"exploration.pg must be 'exact' or 'first_order', got {self.pg!r}")
        if self.update not in ("per_frame", "per_batch"):
            raise ValueError(f"exploration.update must be 'per_frame' or 'per_batch', got {self.update!r}")
        if self.update == "per_batch" and self.pg == "exact":
            raise ValueError(
                "exploration.update 'per_batch' needs pg 'first_order' (an exact gain needs one step per frame)"
            )
        if self.optimizer not in ("rmsprop", "adam", "sgd"):
            raise ValueError(f"exploration.optimizer must be rmsprop, adam or sgd, got {self.optimizer!r}")
        for name in ("beta", "c", "lr", "eps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"exploration.{name} must be > 0, got {getattr(self, name)}")
