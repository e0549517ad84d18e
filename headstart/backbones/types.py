"""Backbone records: preprocessing is data (timm's idea), so the cache can store and compare it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from torch import nn

from headstart.backbones.names import CROPS
from headstart.errors import ConfigError


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the backbone's input tensor. Stored in the cache and part of its fingerprint.

    The network sees `(pixel / 255 - mean) / std` per channel. `channels` 1 means the decoder feeds the image's
    own grayscale plane (a grayscale original is never turned into RGB and averaged back); 3 means RGB.
    `crop` is the plain view's geometry (`extract --crop`, see `extract.preprocess.crop_geometry`).
    """

    input_size: int = 224  # square crop fed to the network
    resize_size: int = 256  # shorter side is resized to this, then center-cropped to input_size
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # one value per channel, on the [0, 1] pixel scale
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"  # PIL/torchvision name
    channels: int = 3  # 3: RGB; 1: the grayscale plane (torchxrayvision)
    crop: str = "center"  # center | full | pad (backbones.names.CROPS); resize_size matters for center only

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ConfigError(f"--crop {self.crop!r} is invalid; expected one of {', '.join(CROPS)}")

    @property
    def value_range(self) -> tuple[float, float]:
        """The range of network inputs a [0, 255] image maps to (over all channels), e.g. (-1024, 1024) for xrv."""
        lows = [(0.0 - m) / s for m, s in zip(self.mean, self.std)]
        highs = [(1.0 - m) / s for m, s in zip(self.mean, self.std)]
        return min(lows), max(highs)

    def for_size(self, image_size: int | None) -> Preprocessing:
        """This recipe at another crop size, keeping the resize/crop ratio; itself when `image_size` is None."""
        if image_size is None:
            return self
        if image_size < 1:
            raise ConfigError(f"--image-size {image_size} is invalid; expected a positive number of pixels")
        return replace(self, input_size=image_size, resize_size=round(image_size * self.resize_size / self.input_size))

    def to_dict(self) -> dict:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if self.channels == 3:  # RGB was the only kind before `channels` existed: keep old fingerprints valid
            del out["channels"]
        if self.crop == "center":  # likewise the only crop before `crop` existed
            del out["crop"]
        return out

    def with_crop(self, crop: str) -> Preprocessing:
        """This recipe with another plain-view crop (ConfigError on an unknown one)."""
        return self if crop == self.crop else replace(self, crop=crop)


@dataclass(frozen=True)
class TapPoint:
    """Where a feature map is read inside a backbone module, by a forward hook (no second forward pass)."""

    path: str  # module path inside `Backbone.module` ("" = the module itself)
    hook: str = "output"  # "output": the module's output; "input": its first positional input
    layout: str = "NCHW"  # "NCHW" | "NHWC" maps, or "NLC" tokens
    prefix_tokens: int = 0  # NLC only: leading class/register tokens before the patch tokens
    relu: bool = False  # the backbone applies a ReLU between this point and its pooling (densenet)


@dataclass
class Backbone:
    """A frozen feature extractor: `module(images) -> (B, num_features)` pooled features."""

    name: str  # full registry name with provider prefix, e.g. "resnet18", "timm:resnet18", "hf:microsoft/rad-dino"
    module: nn.Module  # maps a normalised (B, C, H, W) float batch to (B, num_features)
    num_features: int
    preprocessing: Preprocessing
    weights_tag: str  # "imagenet:<enum name>", "random", "file:<basename>", or a provider's pretrained tag
    weights_sha256: str  # of the weights file(s); "" for random weights
    provider: str = "torchvision"
    # Provider, its package version, model, pretrained tag...: hashed into every feature set's fingerprint.
    # Empty for torchvision, whose fingerprints predate providers and must stay what they were.
    fingerprint_parts: dict = field(default_factory=dict)
    final_tap: TapPoint | None = None  # the last feature map, for pools other than `default`; None: not exposed
    layer_root: str = ""  # `--layer` paths are relative to this submodule ("model" inside provider wrappers)
    map_layout: str = "NCHW"  # layout of 4-d intermediate maps ("NHWC" for swin-like models)
    prefix_tokens: int = 0  # class/register tokens at the front of intermediate token sequences
    last_stage: tuple[str, ...] = ()  # module paths `--freeze partial` trains (besides the head)
