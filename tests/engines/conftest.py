"""Tiny modules for the engine tests: a random resnet18 at 32 px, and modules that cannot export cleanly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from headstart.backbones.registry import create_backbone
from headstart.backbones.types import Backbone, Preprocessing

SIZE = 32  # resnet18 takes 32 px; export and verification stay around a second


@pytest.fixture(autouse=True)
def _graph_cache_under_tmp(monkeypatch):
    """The graph cache follows TORCH_HOME (a per-session temp folder, see tests/conftest.py), never a user's
    HEADSTART_ONNX_CACHE."""
    monkeypatch.delenv("HEADSTART_ONNX_CACHE", raising=False)


@pytest.fixture
def resnet() -> Backbone:
    return create_backbone("resnet18", weights="random", image_size=SIZE, seed=0)


def images(n: int, *, seed: int = 0) -> torch.Tensor:
    """A normalised batch built the way extraction builds it (uint8 pixels, ImageNet mean/std, channels_last)."""
    from headstart.extract.preprocess import normalize_batch

    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)
    return normalize_batch(pixels, Preprocessing(input_size=SIZE, resize_size=SIZE), device="cpu")


class _NumpySort(torch.autograd.Function):
    """A custom autograd Function whose forward leaves torch for numpy: neither exporter can follow it."""

    @staticmethod
    def forward(ctx, x):
        return torch.from_numpy(np.sort(x.detach().cpu().numpy(), axis=1).copy())

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - inference only
        return grad


class Unexportable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return _NumpySort.apply(self.fc(x.mean(dim=(2, 3))))


class BranchOnData(nn.Module):
    """Exports cleanly (the tracer records the branch the random batch takes), but images brighter than the
    threshold take the other branch in PyTorch: only the first-real-batch check can catch it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        y = self.fc(x.mean(dim=(2, 3)))
        if x.mean() > 5:
            return y * 2
        return y


class TwoTaps(nn.Module):
    """A module returning named taps, as layer/pool taps will."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        h = self.conv(x)
        return {"mean": h.mean(dim=(2, 3)), "max": h.amax(dim=(2, 3))}


def tiny_backbone(module: nn.Module, name: str, dim: int = 4) -> Backbone:
    return Backbone(name=name, module=module.eval(), num_features=dim,
                    preprocessing=Preprocessing(input_size=SIZE, resize_size=SIZE), weights_tag="random",
                    weights_sha256="")
