"""Extraction configuration: one dataclass, so the library never sees a click or argparse namespace."""

from __future__ import annotations

from dataclasses import dataclass, field

from headstart.data.types import SplitConfig


@dataclass
class ExtractConfig:
    backbones: list[str] = field(default_factory=lambda: ["resnet18"])  # each becomes /features/<name>
    weights: str = "imagenet"  # imagenet | random | path to a local state dict; never silently replaced
    image_size: int | None = None  # None: each backbone's own input size (224 for most)
    batch_size: int = 64  # images per forward pass; also the unit of resume
    device: str = "auto"  # auto picks CUDA when present
    precision: str = "auto"  # auto: fp16 autocast on CUDA, fp32 on CPU (bf16 measured slower here)
    decode: str = "cpu"  # cpu: PIL in the workers; device: JPEGs decoded on the extraction device (nvJPEG on CUDA)
    workers: int | None = None  # decode processes; None sizes them to the machine (see device.default_workers)
    feature_dtype: str = "float16"  # float16 halves the file; pooled features lose nothing measurable
    on_bad_image: str = "fail"  # fail: stop naming the file; skip: count it, record it, go on
    overwrite: bool = False  # replace a feature set (or cache) made for a different request
    seed: int = 0  # seeds random-weight backbones so a resumed run rebuilds the same network
    split: SplitConfig = field(default_factory=SplitConfig)  # how missing val/test splits are carved
