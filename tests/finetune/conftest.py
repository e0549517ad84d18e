"""Shared fixtures for the fine-tune tests: tiny resnet18 runs (random weights, 32 px) on the phantom set."""

from __future__ import annotations

import pytest

from headstart.data.types import SplitConfig
from headstart.finetune.config import FinetuneConfig


def tiny_config(**overrides) -> FinetuneConfig:
    """A run that takes seconds on CPU: 3 steps of 16 images per epoch at 32 px."""
    settings = dict(backbone="resnet18", weights="random", epochs=2, batch_size=16, image_size=32, workers=0,
                    patience=0, n_boot=50, deterministic=True)
    settings.update(overrides)
    return FinetuneConfig(**settings)


@pytest.fixture
def split_config() -> SplitConfig:
    return SplitConfig()
