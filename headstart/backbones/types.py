"""Backbone records: preprocessing is data (timm's idea), so the cache can store and compare it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the backbone's input tensor. Stored in the cache and part of its fingerprint."""

    input_size: int = 224  # square crop fed to the network
    resize_size: int = 256  # shorter side is resized to this, then center-cropped to input_size
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"  # PIL/torchvision name

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Backbone:
    """A frozen feature extractor: `module(images) -> (B, num_features)` pooled features."""

    name: str  # registry name, e.g. "resnet18"
    module: nn.Module  # maps a normalised (B, 3, H, W) float batch to (B, num_features)
    num_features: int
    preprocessing: Preprocessing
    weights_tag: str  # "imagenet:<enum name>", "random", or "file:<basename>"
    weights_sha256: str  # of the state dict file; "" for random weights
