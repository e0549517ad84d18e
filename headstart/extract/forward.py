"""The frozen forward pass, defined once: `extract` caches what it returns and `predict` scores it.

A head is only as good as the agreement between the features it was trained on and the features it is given,
so extraction and prediction share these two functions rather than two copies of them: the same eval mode,
channels_last layout, on-device normalisation and autocast rule (the caller holds `inference_mode`).
"""

from __future__ import annotations

import torch
from torch import nn

from headstart.backbones.types import Preprocessing
from headstart.device import autocast
from headstart.extract.preprocess import normalize_batch


def prepare_model(module: nn.Module, device: torch.device) -> nn.Module:
    """The frozen module in eval mode on `device`, channels_last (1.5-2x faster convolutions on CPU)."""
    module = module.eval().requires_grad_(False)
    return module.to(device, memory_format=torch.channels_last)


def forward_features(model: nn.Module, images: torch.Tensor, prep: Preprocessing, *, device: torch.device,
                     amp_dtype: torch.dtype | None) -> torch.Tensor:
    """(B, C, H, W) uint8 crops -> the model's (B, D) output as float32 on the CPU (the copy synchronises)."""
    x = normalize_batch(images, prep, device=device)
    with autocast(device, amp_dtype):
        y = model(x)
    return y.float().cpu()
